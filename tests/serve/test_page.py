"""The page ``stt-core serve`` shows at ``/``, in a real browser: Debian's headless Chromium
driven by its chromedriver (Selenium), its microphone a fake device fed from a speech fixture.
It asks for the key, listens at once with ``?autostart=1``, streams to ``/v1/realtime`` and shows
the fixture's words with the engine and the time from the end of speech; its file picker
transcribes a file. ``.ci/run`` installs chromium and chromium-driver when they are missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from realtime_clients import REALTIME_KEY
from serving import ServeProcess
from speech import FIXTURES, MAX_WER, wer
from stt_core import Audio

ROOT = Path(__file__).parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif((CHROMIUM is None or DRIVER is None) and not os.environ.get("CI"),
                       reason="Chromium and its driver are not installed (apt-get install chromium "
                              "chromium-driver; .ci/run installs them, and CI always runs this)"),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium whose microphone says lights.wav, over and over, with a pause each side."""
    assert CHROMIUM and DRIVER, "CI needs chromium and chromium-driver (.ci/run installs them)"
    speech = Audio.from_file(FIXTURES / "lights.wav")
    rate = speech.sample_rate
    said = Audio.concat([Audio.silence(1.0, rate), speech, Audio.silence(1.5, rate)])
    (tmp_path / "mic.wav").write_bytes(said.encode("WAV"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={tmp_path / 'mic.wav'}",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=900,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_hears_the_microphone_and_transcribes_a_file(
    realtime_server: ServeProcess, browser: webdriver.Chrome, tmp_path: Path,
) -> None:
    browser.get(f"{realtime_server.url}/")
    key = browser.find_element(By.ID, "key")
    assert key.is_displayed()  # the server has a key: the page asks for it
    key.send_keys(REALTIME_KEY)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    browser.get(f"{realtime_server.url}/?autostart=1")  # the key is kept for the tab
    finals = WebDriverWait(browser, 60).until(lambda d: [
        f for f in d.find_elements(By.CSS_SELECTOR, "li.final") if wer("lights", text(f)) <= MAX_WER])
    meta = finals[0].find_element(By.CLASS_NAME, "meta").text
    assert meta.startswith("whisper · ") and meta.endswith(" ms after the end of speech"), meta
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("STT_CORE_SCREENSHOT"):  # how docs/page.png was made
        shutil.copy(shot, ROOT / "docs" / "page.png")
    browser.find_element(By.ID, "mic").click()  # stop
    browser.find_element(By.ID, "file").send_keys(str(FIXTURES / "fox.wav"))
    WebDriverWait(browser, 60).until(lambda d: "whisper" in d.find_element(By.ID, "file-status").text)
    assert wer("fox", browser.find_element(By.ID, "file-text").text) <= MAX_WER
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def text(final: object) -> str:
    return str(final.find_element(By.CLASS_NAME, "text").text)  # type: ignore[attr-defined]
