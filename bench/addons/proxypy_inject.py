"""proxy.py plugin: TLS-intercept bench*.test and inject the real Authorization; resolve *.test to 127.0.0.1."""
import os

from proxy.http.proxy import HttpProxyBasePlugin

SECRET = os.environ["BENCH_SECRET"].encode()


class BenchInjectPlugin(HttpProxyBasePlugin):
    def resolve_dns(self, host, port):  # resolver override for the bench's .test names only
        return ("127.0.0.1", None) if host.endswith(".test") else (None, None)

    def do_intercept(self, request):  # other.test is tunnelled untouched
        return request.host is not None and request.host.startswith(b"bench")

    def handle_client_request(self, request):
        request.add_header(b"Authorization", b"Bearer " + SECRET)
        return request
