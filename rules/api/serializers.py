"""API serializers of the rules app."""
