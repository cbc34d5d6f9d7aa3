import os

import dj_database_url

SECRET_KEY = os.environ.get("SECRET_KEY", "only-for-the-sample-app")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles", "notes"]
MIDDLEWARE = []
ROOT_URLCONF = "site_pg.urls"
WSGI_APPLICATION = "site_pg.wsgi.application"
# DATABASE_URL from the postgres add-on (sslmode=require in it); ssl_require as on Heroku.
DATABASES = {"default": dj_database_url.config(conn_max_age=0, ssl_require=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = "staticfiles"
