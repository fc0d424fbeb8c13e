"""Django-level error handlers: problem details under /api/, Django's own pages elsewhere (Admin)."""

from django.views import defaults

from iothub.api.problems import is_api_request, problem_response


def handler400(request, exception=None):
    if is_api_request(request):
        return problem_response(400, code="bad_request", detail="The request could not be understood.")
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if is_api_request(request):
        return problem_response(403, code="permission_denied", detail="You do not have permission to do this.")
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if is_api_request(request):
        return problem_response(404, code="not_found", detail=f"No API resource at {request.path}.")
    return defaults.page_not_found(request, exception)


def handler500(request):
    if is_api_request(request):
        return problem_response(500, code="server_error", detail="An unexpected error occurred; it has been logged.")
    return defaults.server_error(request)
