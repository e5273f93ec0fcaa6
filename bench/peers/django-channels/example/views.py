from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.shortcuts import redirect, render
from django.urls import reverse

User = get_user_model()


@login_required(login_url="/log_in/")
def user_list(request):
    """
    NOTE: This is fine for demonstration purposes, but this should be
    refactored before we deploy this app to production.
    Imagine how 100,000 users logging in and out of our app would affect
    the performance of this code!
    """
    users = User.objects.select_related("logged_in_user")
    for user in users:
        user.status = "Online" if hasattr(user, "logged_in_user") else "Offline"
    return render(request, "example/user_list.html", {"users": users})


def log_in(request):
    form = AuthenticationForm()
    if request.method == "POST":
        form = AuthenticationForm(data=request.POST)
        if form.is_valid():
            login(request, form.get_user())
            return redirect(reverse("example:user_list"))
        else:
            print(form.errors)
    return render(request, "example/log_in.html", {"form": form})


@login_required(login_url="/log_in/")
def log_out(request):
    # Django 5 no longer logs out on GET in its own LogoutView; the tutorial's view did.
    # Keep the tutorial's behaviour (any method).
    logout(request)
    return redirect(reverse("example:log_in"))


def sign_up(request):
    form = UserCreationForm()
    if request.method == "POST":
        form = UserCreationForm(data=request.POST)
        if form.is_valid():
            form.save()
            return redirect(reverse("example:log_in"))
        else:
            print(form.errors)
    return render(request, "example/sign_up.html", {"form": form})
