"""Time the same transformations through kura and libvips on the same files, cold.

Run through benches/compare.sh, which installs pyvips and builds kura first. Two comparisons per
operation:

- in-process: kura's `pipeline::run` (the `transform-bench` example) against pyvips calls in this
  process, both starting from the file's bytes in memory;
- over HTTP on 127.0.0.1: the kura release server, with a fresh cache key for every request,
  against a minimal Python HTTP server that runs the same pyvips calls. Both servers read the
  source file from disk for each request; only kura also stores the variant it computed.

Every figure is a cold computation: the pyvips operation cache is off, and every kura URL adds a
different `bg-RRGGBB`, which changes the cache key but not the work, because these plans never
pad or rotate. The output bytes therefore repeat, and kura's store would find the variant blob
already present and skip the rename and directory fsyncs that new bytes cost. So after each
request, outside the timed part, the script deletes that blob file from kura's throwaway data
directory.
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import pyvips

# libvips caches operation results by their arguments, so an identical thumbnail call would
# return at once and the figures would not be cold.
pyvips.cache_set_max(0)


def jpeg_thumbnail(data):
    # thumbnail_buffer is libvips's shrink-on-load path. kura writes 4:4:4 JPEGs with optimised
    # Huffman tables, so libvips is asked for the same output.
    image = pyvips.Image.thumbnail_buffer(data, 500)
    return image.jpegsave_buffer(
        Q=80, optimize_coding=True, subsample_mode="off", keep="none"
    )


def centre_crop_webp(data):
    image = pyvips.Image.thumbnail_buffer(data, 500, height=500, crop="centre")
    return image.webpsave_buffer(Q=70, effort=4, keep="none")


def thumbnail_webp(data):
    image = pyvips.Image.thumbnail_buffer(data, 500)
    return image.webpsave_buffer(Q=80, effort=4, keep="none")


def avif_same_size(data):
    image = pyvips.Image.new_from_buffer(data, "")
    return image.heifsave_buffer(Q=60, compression="av1", keep="none")


# Each operation: name, photo file, kura `tr` chain, equivalent pyvips function.
OPERATIONS = [
    ("12 MP JPEG -> w-500 JPEG q80", "photo-12mp.jpg", "w-500,q-80,f-jpg", jpeg_thumbnail),
    (
        "15 MP progressive JPEG -> w-500,h-500 WebP q70",
        "flow-prog.jpg",
        "w-500,h-500,q-70,f-webp",
        centre_crop_webp,
    ),
    ("15 MP alpha PNG -> w-500 WebP q80", "kay-alpha.png", "w-500,q-80,f-webp", thumbnail_webp),
    ("15 MP WebP -> w-500 WebP q80", "flow.webp", "w-500,q-80,f-webp", thumbnail_webp),
    ("1 MP JPEG -> AVIF q60", "photo-1mp.jpg", "f-avif,q-60", avif_same_size),
]
VIPS_FUNCTIONS = {function.__name__: function for _, _, _, function in OPERATIONS}


class VipsHandler(http.server.BaseHTTPRequestHandler):
    """GET /FUNCTION/FILE: read FILE from the photo directory and return the function's output."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes. With Nagle's algorithm the body then waits for the
    # client's delayed ACK, which added up to 40 ms per response on Linux loopback. kura sets
    # TCP_NODELAY too.
    disable_nagle_algorithm = True
    photo_dir = "."

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in VIPS_FUNCTIONS or "/" in parts[1]:
            self.send_error(404)
            return
        with open(os.path.join(self.photo_dir, parts[1]), "rb") as source:
            data = source.read()
        body = VIPS_FUNCTIONS[parts[0]](data)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def serve_vips(port, photo_dir):
    VipsHandler.photo_dir = photo_dir
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), VipsHandler)
    server.serve_forever()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(port, process, server_name, log_path):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(
                f"error: {server_name} exited with status {process.returncode}; log: {log_path}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(
        f"error: {server_name} did not respond to GET /healthz on 127.0.0.1:{port} within 30 s; "
        f"log: {log_path}"
    )


def time_calls(call, runs, after=lambda output: None):
    """Call once to warm up, then `runs` times, and run `after` on each output outside the timed
    part. Return the times in milliseconds and the last output."""
    output = call()
    after(output)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        output = call()
        times.append((time.perf_counter() - started) * 1000)
        after(output)
    return times, output


def kura_in_process(example, path, chain, runs):
    result = subprocess.run(
        [example, "time", path, chain, str(runs)], check=True, capture_output=True, text=True
    )
    report = json.loads(result.stdout)
    return report["times_ms"], report["bytes"]


def http_get(connection, path, expect_miss):
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"error: GET {path} returned {response.status}: {body[:300]!r}")
    if expect_miss and response.getheader("x-cache") != "miss":
        sys.exit(f"error: kura served GET {path} from its variant cache, so it would not be cold")
    return body, response.getheader("etag")


def delete_variant_blob(data_dir, etag):
    """Delete the blob that kura stored for a variant, named by the hash in its ETag, so that the
    next identical output is stored as a new blob (see the module docstring)."""
    digest = etag.strip('"')
    os.remove(os.path.join(data_dir, "blobs", digest[:2], digest[2:4], digest))


def upload(port, key, path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as source:
        data = source.read()
    name = os.path.basename(path)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST",
        "/api/media",
        body=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    response = connection.getresponse()
    reply = response.read()
    if response.status != 201:
        sys.exit(f"error: uploading {path} to kura returned {response.status}: {reply[:300]!r}")
    return urllib.parse.urlsplit(json.loads(reply)["data"]["url"]).path.lstrip("/")


def cell(times):
    return f"{min(times):.1f} ({statistics.median(times):.1f})"


def ratio(kura_times, vips_times):
    return f"{min(kura_times) / min(vips_times):.2f}"


def start_servers(args, work):
    """Start kura (fresh data directory, one API key) and the libvips server on free ports.

    Returns the two processes, kura's port, the libvips server's port and the API key.
    """
    data_dir = os.path.join(work, "data")
    kura_log = os.path.join(work, "kura.log")
    vips_log = os.path.join(work, "vips-server.log")
    # kura reads ./config.toml when it exists, so the empty work directory gives built-in defaults.
    key = subprocess.run(
        [args.kura, "key", "create", "--name", "bench", "--data-dir", data_dir],
        cwd=work, check=True, capture_output=True, text=True,
    ).stdout.strip()
    kura_port, vips_port = free_port(), free_port()
    with open(kura_log, "w") as log:
        kura = subprocess.Popen(
            [args.kura, "serve", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{kura_port}",
             "--public-url", f"http://127.0.0.1:{kura_port}"],
            cwd=work, stdout=log, stderr=log,
        )
    with open(vips_log, "w") as log:
        vips = subprocess.Popen(
            [sys.executable, __file__, "--photos", args.photos, "--kura", args.kura,
             "--example", args.example, "--serve-vips", str(vips_port)],
            stdout=log, stderr=log,
        )
    wait_for_health(kura_port, kura, "kura", kura_log)
    # The libvips server has no /healthz: any response, a 404 here, shows that it listens.
    deadline = time.monotonic() + 30
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", vips_port, timeout=1)
            probe.request("GET", "/")
            probe.getresponse().read()
            break
        except OSError:
            if time.monotonic() > deadline or vips.poll() is not None:
                sys.exit(f"error: the libvips server did not start; log: {vips_log}")
            time.sleep(0.05)
    return (kura, vips), kura_port, vips_port, key


def measure(args, work, kura_port, vips_port, key):
    """Time every operation four ways. Return one tuple per operation: name, kura in-process,
    libvips in-process, kura HTTP and libvips HTTP times, then both output sizes in bytes."""
    rows = []
    fresh = iter(range(1, 1 << 24))
    for name, photo, chain, function in OPERATIONS:
        if args.only and args.only not in name:
            continue
        print(f"timing: {name}", file=sys.stderr)
        path = os.path.join(args.photos, photo)
        with open(path, "rb") as source:
            data = source.read()
        kura_local, kura_bytes = kura_in_process(args.example, path, chain, args.runs)
        vips_local, vips_output = time_calls(lambda: function(data), args.runs)

        stored_name = urllib.parse.quote(upload(kura_port, key, path))
        # New connections per operation: kura closes keep-alive connections that idle longer
        # than server.header_read_timeout_secs, which the in-process runs above can exceed.
        kura_connection = http.client.HTTPConnection("127.0.0.1", kura_port, timeout=120)
        vips_connection = http.client.HTTPConnection("127.0.0.1", vips_port, timeout=120)
        kura_http, _ = time_calls(
            lambda: http_get(
                kura_connection, f"/tr:{chain},bg-{next(fresh):06X}/{stored_name}", True
            ),
            args.runs,
            lambda output: delete_variant_blob(os.path.join(work, "data"), output[1]),
        )
        vips_http, _ = time_calls(
            lambda: http_get(vips_connection, f"/{function.__name__}/{photo}", False),
            args.runs,
        )
        rows.append(
            (name, kura_local, vips_local, kura_http, vips_http, kura_bytes, len(vips_output))
        )
    return rows


def print_tables(args, rows):
    vips_version = ".".join(str(pyvips.version(part)) for part in range(3))
    concurrency = os.environ.get("VIPS_CONCURRENCY", "unset (one thread per core)")
    print(
        f"Milliseconds, fastest of {args.runs} cold runs (median in brackets); "
        "ratio = kura / libvips on the fastest."
    )
    print(
        f"libvips {vips_version} (pyvips {pyvips.__version__}), VIPS_CONCURRENCY={concurrency}."
    )
    print()
    print(
        "| operation | kura in-process | libvips in-process | ratio "
        "| kura HTTP | libvips HTTP | ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, kura_local, vips_local, kura_http, vips_http, _, _ in rows:
        print(
            f"| {name} | {cell(kura_local)} | {cell(vips_local)} "
            f"| {ratio(kura_local, vips_local)} | {cell(kura_http)} | {cell(vips_http)} "
            f"| {ratio(kura_http, vips_http)} |"
        )
    print()
    print("| operation | kura output bytes | libvips output bytes |")
    print("| --- | ---: | ---: |")
    for name, _, _, _, _, kura_bytes, vips_bytes in rows:
        print(f"| {name} | {kura_bytes} | {vips_bytes} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="directory that benches/fetch-photos.sh fills")
    parser.add_argument("--kura", required=True, help="the kura release binary")
    parser.add_argument("--example", required=True, help="the transform-bench example binary")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per figure")
    parser.add_argument(
        "--only", metavar="TEXT", help="run only the operations whose name contains TEXT"
    )
    parser.add_argument("--serve-vips", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The servers run in a temporary directory, so every path must be absolute.
    args.photos, args.kura, args.example = map(
        os.path.abspath, (args.photos, args.kura, args.example)
    )
    if args.serve_vips:
        serve_vips(args.serve_vips, args.photos)
        return

    work = tempfile.mkdtemp(prefix="kura-compare-")
    print(f"logs and kura's data directory: {work}", file=sys.stderr)
    servers = ()
    try:
        servers, kura_port, vips_port, key = start_servers(args, work)
        rows = measure(args, work, kura_port, vips_port, key)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    print_tables(args, rows)
    # Kept after a failure, because the error message names the logs in it.
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
