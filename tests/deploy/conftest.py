# The generated certificate and a client trusting it, for the stack tests beside test_proxy_tls.py.
from tests.deploy.test_proxy_tls import certificate, tls  # noqa: F401
