from rest_framework import pagination

from iothub.api.exceptions import InvalidQueryParameters


def positive_int_parameter(request, name):
    """A positive integer query parameter, or None when absent; anything else is a 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidQueryParameters({name: ["Must be a positive integer."]})
    return int(raw)


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=&page_size=`` → ``{count, next, previous, results}``; page_size defaults to 50, clamped to 500."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        requested = positive_int_parameter(request, self.page_size_query_param)
        return self.page_size if requested is None else min(requested, self.max_page_size)

    def get_page_number(self, request, paginator):
        return positive_int_parameter(request, self.page_query_param) or 1
