from django_filters.rest_framework import DjangoFilterBackend

from iothub.api.exceptions import InvalidQueryParameters


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with invalid filter values reported per query parameter."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise InvalidQueryParameters(filterset.errors)
        return filterset.qs
