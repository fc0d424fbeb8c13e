from django.http import Http404
from rest_framework.exceptions import ErrorDetail
from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's, except for a ``?format=`` no renderer serves (DRF: a 404 before authentication): the view's first
    renderer is chosen, and the error is left on the request for KnownQueryParametersMixin to raise as a 400 naming
    the parameter once the caller is authenticated and allowed."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            formats = list(dict.fromkeys(renderer.format for renderer in renderers))
            if len(formats) > 1:
                error = ErrorDetail(f"Must be one of: {', '.join(formats)}.", code="invalid_choice")
            else:
                error = ErrorDetail("Unknown query parameter: this endpoint has one format.", code="unknown_parameter")
            request.format_error = {self.settings.URL_FORMAT_OVERRIDE: [error]}
            return renderers[0], renderers[0].media_type
