from django.http import Http404
from rest_framework.exceptions import ErrorDetail
from rest_framework.negotiation import DefaultContentNegotiation

from iothub.api.exceptions import InvalidQueryParameters


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's, with a ``?format=`` no renderer serves answered as a 400 problem naming the parameter (DRF: a 404)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            formats = list(dict.fromkeys(renderer.format for renderer in renderers))
            if len(formats) > 1:
                error = ErrorDetail(f"Must be one of: {', '.join(formats)}.", code="invalid_choice")
            else:
                error = ErrorDetail("Unknown query parameter: this endpoint has one format.", code="unknown_parameter")
            raise InvalidQueryParameters({self.settings.URL_FORMAT_OVERRIDE: [error]}) from None
