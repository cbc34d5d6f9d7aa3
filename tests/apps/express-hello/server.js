const fs = require("fs");
const express = require("express");

const app = express();
app.get("/", (req, res) => res.type("text/plain").send(fs.readFileSync("dist/greeting.txt", "utf8")));
app.listen(Number(process.env.PORT || 5000), "0.0.0.0");
