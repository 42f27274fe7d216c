#!/usr/bin/env python3
"""Static server for the app: www/ at /, the wasm-pack output pkg/ at /pkg/, loopback only.

Every response carries a Content-Security-Policy that allows only same-origin scripts and wasm.
"""
import argparse
import functools
import http.server
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".json": "application/json"}

    def translate_path(self, path):
        rel = path.split("?", 1)[0].split("#", 1)[0]
        if rel.startswith("/pkg/"):
            return http.server.SimpleHTTPRequestHandler.translate_path(self, rel[len("/pkg"):]).replace(
                os.path.join(ROOT, "www"), os.path.join(ROOT, "pkg"), 1)
        return http.server.SimpleHTTPRequestHandler.translate_path(self, rel)

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=os.path.join(ROOT, "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"serving http://127.0.0.1:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
