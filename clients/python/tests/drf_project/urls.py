from django.urls import path

from . import views

urlpatterns = [
    path("ping", views.Ping.as_view()),
    path("sources", views.Sources.as_view()),
    path("uploads", views.Uploads.as_view()),
    path("two", views.TwoThrottles.as_view()),
    path("orders", views.Orders.as_view()),
    path("bulk-orders/<int:batch>/", views.BulkOrders.as_view()),
    path("reports", views.Reports.as_view()),
    path("search/<str:term>", views.Search.as_view()),
    path("running", views.Running.as_view()),
    path("generate", views.Generate.as_view()),
]
