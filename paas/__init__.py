"""paas: a Heroku-style micro-PaaS. `git push` → buildpacks → runc dynos → nginx."""
