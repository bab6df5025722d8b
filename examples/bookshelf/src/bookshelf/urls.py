from django.urls import path
from shelf import views

urlpatterns = [path("", views.index, name="index")]
