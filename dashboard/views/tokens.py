"""REST API tokens: every signed-in user issues and revokes their own; admins see and revoke
everyone's. Post/Redirect/Get throughout, so that reloading a page never issues or revokes
again: a new token rides in the user's own session across the redirect and is taken out of it
by the one page view that shows it."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from dashboard import actions, roles
from dashboard.forms import ApiTokenForm
from dashboard.models import ApiToken

NEW_TOKEN = "dashboard.new_api_token"


@roles.login_required
def token_list(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = actions.issue_api_token(acting_user=request.user.get_username(),
                                        username=request.user.get_username(),
                                        label=form.cleaned_data["label"], lifetime=form.cleaned_data["expires"])
        request.session[NEW_TOKEN] = token
        return redirect("dashboard:tokens")
    new_token = request.session.pop(NEW_TOKEN, None) if request.method == "GET" else None
    is_admin = roles.is_admin(request.user)
    context = {
        "form": form,
        "new_token": new_token,
        "mine": ApiToken.objects.filter(user=request.user),
        "is_token_admin": is_admin,
        "others": (ApiToken.objects.exclude(user=request.user).select_related("user")
                   .order_by("user__username", "-created_at") if is_admin else []),
    }
    response = render(request, "dashboard/tokens.html", context, status=400 if form.errors else 200)
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


@roles.login_required
def token_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    """GET asks for confirmation, POST revokes. Another user's token is not found (404) unless
    the user is an admin, so nobody learns which prefixes exist."""
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or (token.user_id != request.user.pk and not roles.is_admin(request.user)):
        raise Http404("No such API token")
    if request.method == "POST":
        if actions.revoke_api_token(acting_user=request.user.get_username(), token=token):
            messages.success(request, f"API token {token} of {token.user.get_username()} revoked; "
                                      "it is refused from the next request on.")
        else:
            messages.info(request, f"API token {token} was already revoked.")
        return redirect("dashboard:tokens")
    return render(request, "dashboard/token_revoke.html", {"token": token})
