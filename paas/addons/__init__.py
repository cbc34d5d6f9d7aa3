"""Add-ons (issue 18): a Postgres database and a Redis per app, each its own server in its own
container, with backups verified by a restore."""
