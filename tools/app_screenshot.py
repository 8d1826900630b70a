"""Make docs/app.png: start `dreamlift app`, run a prompt in headless Chromium, screenshot the page.

    python tools/app_screenshot.py --prompt "a blue chair" --out docs/app.png
    dreamlift generate "a blue chair" --out shots/a-blue-chair && \
        python tools/app_screenshot.py --outputs shots --gallery --out docs/app.png

Needs dreamlift[app], playwright and Debian's chromium (as the browser test, tests/smoke/test_app.py). The run
uses the app's defaults (preset fast) unless ``--set`` says otherwise; its outputs go to a temporary folder
unless ``--outputs`` names one. ``--gallery`` runs nothing: it opens the newest run of ``--outputs`` from the
gallery (a run made beforehand from the command line at full speed: the browser's software WebGL takes one of
the two cores while the page is open, which doubles a run made in the page).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CODE = "import sys; from dreamlift.cli import main; sys.exit(main(sys.argv[1:]))"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", default="a blue chair")
    ap.add_argument("--out", type=Path, default=Path("docs/app.png"))
    ap.add_argument("--set", default="", help="the app's --set (generate settings for the run)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--outputs", type=Path, default=None, help="the app's outputs folder (default: a temporary one)")
    ap.add_argument("--gallery", action="store_true", help="show the newest run of --outputs instead of running")
    args = ap.parse_args()
    if args.gallery and args.outputs is None:
        ap.error("--gallery needs --outputs")
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        outputs = args.outputs or Path(tmp) / "outputs"
        cmd = [sys.executable, "-c", CODE, "app", "--port", str(port), "--outputs", str(outputs)]
        proc = subprocess.Popen(cmd + (["--set", args.set] if args.set else []))
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(360):
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                                  "--no-sandbox"])
                page = browser.new_page(viewport={"width": args.width, "height": 1100})
                page.goto(url)
                page.locator("#prompt textarea").fill(args.prompt)
                if args.gallery:
                    page.locator("#gallery button.thumbnail-item").first.click()
                    expect(page.locator("#status")).to_contain_text("steps", timeout=60_000)
                    page.locator("#model canvas").first.wait_for(timeout=120_000)
                else:
                    page.locator("#run").click()
                    expect(page.locator("#status")).to_contain_text("Done", timeout=1_800_000)
                page.wait_for_timeout(5000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
