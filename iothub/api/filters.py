from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters

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


class SearchFilter(filters.SearchFilter):
    """DRF's, documented (and accepted) only on views that declare ``search_fields``: elsewhere it did nothing."""

    def get_schema_operation_parameters(self, view):
        return super().get_schema_operation_parameters(view) if getattr(view, "search_fields", None) else []


class OrderingFilter(filters.OrderingFilter):
    """DRF's, documented (and accepted) only on views that declare ``ordering_fields``."""

    def get_schema_operation_parameters(self, view):
        if not getattr(view, "ordering_fields", None):
            return []
        return super().get_schema_operation_parameters(view)
