// The build script: renders the greeting into dist/ at build time.
const fs = require("fs");
const template = fs.readFileSync("src/greeting.txt", "utf8").trim();
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/greeting.txt", `${template} (built with express ${require("express/package.json").version})\n`);
