from django.urls import path

from . import views

urlpatterns = [
    path("products", views.Products.as_view()),
    path("checkout", views.Checkout.as_view()),
    path("search", views.Search.as_view()),
]
