import json

import psycopg
from django.db import connection
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from notes.models import Note


def index(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        (ssl,) = cursor.fetchone()
    info = {"notes": Note.objects.count(), "ssl": ssl, "libpq": psycopg.pq.__impl__,
            "libpq_version": psycopg.pq.version()}
    return HttpResponse(json.dumps(info), content_type="application/json")


@csrf_exempt
def notes(request):
    if request.method == "POST":
        Note.objects.create(text=request.body.decode())
    texts = list(Note.objects.order_by("id").values_list("text", flat=True))
    return HttpResponse(json.dumps(texts), content_type="application/json")


urlpatterns = [path("", index), path("notes", notes)]
