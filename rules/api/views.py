"""API views of the rules app."""
