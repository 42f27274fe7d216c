#!/usr/bin/env python3
"""Static server for the app: www/ at /, the wasm-bindgen output pkg/ at /pkg/ (loopback by default).

Every response carries a Content-Security-Policy that allows only same-origin scripts and wasm
(and workers from blob: URLs, which the threaded build's pool starts from its own script), and
makes the page cross-origin isolated (COOP + COEP), which shared wasm memory, and so the threaded
CPU build, needs.
Files are sent compressed when the browser accepts it, as any production server or CDN would:
brotli from the `.br` copies scripts/precompress.mjs writes (when fresh), otherwise gzip made
on the fly; with a validator, so that reloads come from the browser cache.
"""
import argparse
import functools
import gzip
import http.server
import io
import os
import pathlib
import socket

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "style-src 'self'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'")


class Handler(http.server.SimpleHTTPRequestHandler):
    # Keep-alive: Chromium only revalidates (If-None-Match → 304) what it cached over HTTP/1.1.
    protocol_version = "HTTP/1.1"
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
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    _compressed = {}

    def list_directory(self, path):
        # No listings: a folder is only ever served as its index.html.
        self.send_error(404)
        return None

    def send_head(self):
        try:
            return self.send_file()
        except (ValueError, OSError):
            # A path the file system refuses (an embedded NUL, a name too long): no such file.
            self.send_error(400 if "\0" in self.translate_path(self.path) else 404)
            return None

    def send_file(self):
        path = self.translate_path(self.path)
        if "\0" in path:
            raise ValueError("embedded null byte")
        if os.path.isdir(path):
            if not self.path.split("?", 1)[0].endswith("/"):
                return super().send_head()  # the redirect to the folder's "/"
            path = os.path.join(path, "index.html")
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        stat = os.stat(path)
        accepted = self.headers.get("Accept-Encoding", "")
        brotli = path + ".br"
        if "br" in accepted and os.path.isfile(brotli) and os.stat(brotli).st_mtime_ns >= stat.st_mtime_ns:
            encoding, load = "br", lambda: pathlib.Path(brotli).read_bytes()
        elif "gzip" in accepted:
            encoding, load = "gzip", lambda: gzip.compress(pathlib.Path(path).read_bytes(), 9)
        else:
            encoding, load = "identity", lambda: pathlib.Path(path).read_bytes()
        # Every response has a validator, the page ("/") too: a reload revalidates (304).
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}-{encoding}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return None
        key = (path, stat.st_mtime_ns, encoding)
        if key not in Handler._compressed:
            Handler._compressed[key] = load()
        body = Handler._compressed[key]
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        if encoding != "identity":
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        return io.BytesIO(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: loopback only)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args()
    if args.quiet:
        Handler.log_message = lambda *a: None
    handler = functools.partial(Handler, directory=os.path.join(ROOT, "www"))
    server_class = http.server.ThreadingHTTPServer
    if ":" in args.host:
        server_class = type("Server6", (server_class,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((args.host, args.port), handler)
    except OSError as e:
        raise SystemExit(f"serve.py: cannot listen on {args.host}:{args.port}: {e.strerror}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: other machines on the network can open the app",
              flush=True)
    print(f"serving http://{args.host}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
