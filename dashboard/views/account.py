from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST


def login(request: HttpRequest) -> HttpResponse:
    return auth_views.LoginView.as_view(template_name="dashboard/login.html",
                                        redirect_authenticated_user=True)(request)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import logout as end_session

    end_session(request)
    return redirect("/login/")
