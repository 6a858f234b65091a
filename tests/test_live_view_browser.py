"""`roadseg run --serve` in a real browser: headless Chromium (the OS package, driven by Selenium)
opens the page of a two-stream run and sees each stream's image change and the stats panel count
frames; Ctrl-C then ends the run and the server cleanly. The screenshot goes to
$ROADSEG_LIVE_VIEW_SCREENSHOT when set, else to the test's folder (the README's docs/live-view.jpg
was taken the same way, with the default model on a CamVid clip and the synthetic clip). Skips,
saying why, only where no browser can be found or started; .ci/run installs Chromium where it can."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _driver():
    """A headless Chromium WebDriver, or a skip with the reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (it comes with the dev extra)")
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, with its reason
        pytest.skip(f"Chromium did not start: {str(e).splitlines()[0]}")


def test_live_view_in_a_real_browser(tiny_onnx_dynamic, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _driver()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "roadseg", "run", str(tiny_onnx_dynamic), "--source", "synthetic:100000", "--source",
           "synthetic:100000", "--live", "--serve", "127.0.0.1:0", "--backend", "ort-cpu", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stderr:  # the line that says the server is up
            if m := re.search(r"live view at (http://\S+)", line):
                url = m.group(1)
                break
        assert url, f"no live-view line; exit {proc.poll()}"
        browser.get(url)
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        images = browser.find_elements(By.CSS_SELECTOR, "#grid img")
        assert [i.get_attribute("alt") for i in images] == ["synthetic", "synthetic-2"]
        for img in images:
            wait.until(lambda _, img=img: browser.execute_script("return arguments[0].naturalWidth", img) > 0)
            before = img.screenshot_as_png
            wait.until(lambda _, img=img, before=before: img.screenshot_as_png != before)  # the stream moves
        rows = wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#stats tbody tr[data-stream]"))
        assert sorted(r.get_attribute("data-stream") for r in rows) == ["synthetic", "synthetic-2"]

        def counted() -> int:
            text = browser.find_element(By.ID, "total-frames").text
            return int(text) if text.isdigit() else 0

        wait.until(lambda _: counted() > 0)
        seen = counted()
        wait.until(lambda _: counted() > seen)  # the panel refreshes and the count rises
        shot = Path(os.environ.get("ROADSEG_LIVE_VIEW_SCREENSHOT") or tmp_path / "live-view.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        browser.quit()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130, err
    assert "2 streams -> ort-cpu (" in out and "stopped by request" in out
