"""mitmdump addon: inject the real Authorization on bench*.test, resolve *.test to 127.0.0.1 (bench only)."""
import os

SECRET = os.environ["BENCH_SECRET"]


class Inject:
    def server_connect(self, data):  # resolver override: CONNECT carries the name, we pick the address
        host, port = data.server.address
        if host.endswith(".test"):
            data.server.sni = data.server.sni or host
            data.server.address = ("127.0.0.1", port)

    def request(self, flow):
        if flow.request.pretty_host.startswith("bench"):  # .host is the address we dialled
            flow.request.headers["Authorization"] = "Bearer " + SECRET


addons = [Inject()]
