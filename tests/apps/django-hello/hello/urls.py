from django.http import HttpResponse
from django.templatetags.static import static
from django.urls import path


def hello(request):
    return HttpResponse(f"Hello from Django on paas; style at {static('hello/style.css')}\n",
                        content_type="text/plain")


urlpatterns = [path("", hello)]
