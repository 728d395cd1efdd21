"""Drives linechat's browser client in headless Chromium for tests/browser.rs.

Usage: page.py <page url> <screenshot path>. Talks to the Rust test over
stdout (one word per line: what the page has done or seen) and stdin (one
word per line: what the test's plain TCP client has done), so each side
waits for the other's events instead of sleeping.
"""
import hashlib
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

URL, SHOT = sys.argv[1], sys.argv[2]
WAIT = 20


def tell(word):
    print(word, flush=True)


def expect(word):
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} from the test, got {line!r}")


opts = webdriver.ChromeOptions()
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             "--window-size=420,860"):
    opts.add_argument(flag)
# Downloads land here, where the test reads them back.
downloads = tempfile.mkdtemp(prefix="linechat-downloads-")
opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                       "download.prompt_for_download": False})
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    # The page redraws its lists whole, so an element found a moment ago
    # may be gone: every wait tries again then, and clicks happen in waits.
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))

    def click_button(css, label):
        """Clicks the first button matching `css` whose text ends with `label`."""
        def attempt(d):
            for b in d.find_elements(By.CSS_SELECTOR, css):
                if b.text.endswith(label):
                    b.click()
                    return True
            return False
        wait.until(attempt)
    driver.get(URL)
    find = driver.find_element
    find(By.ID, "user").send_keys("alice")
    find(By.ID, "password").send_keys("alicepass1")
    find(By.ID, "do-register").click()
    wait.until(lambda d: d.find_element(By.ID, "home").is_displayed())
    find(By.ID, "join-name").send_keys("#web")
    find(By.CSS_SELECTOR, "#join-form button[type=submit]").click()
    wait.until(lambda d: d.find_element(By.ID, "chat").is_displayed())
    tell("JOINED")
    # Markup in a message must show as text, never run.
    find(By.ID, "say-text").send_keys("hi from the browser <img src=x onerror=alert(1)>")
    find(By.CSS_SELECTOR, "#say-form button[type=submit]").click()
    tell("SAID")
    expect("TYPING")
    wait.until(lambda d: d.find_element(By.ID, "typing").text == "bob is typing\u2026")
    tell("SAW_TYPING")
    expect("SAID")
    texts = lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#messages .text")]
    wait.until(lambda d: "hi from nc" in texts(d))
    # bob spoke after alice's message, so he has read it: two ticks, read.
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#messages li.mine .tick").get_attribute("title") == "read")
    mine = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#messages li.mine .text").text)
    assert mine == "hi from the browser <img src=x onerror=alert(1)>", mine
    assert not driver.find_elements(By.CSS_SELECTOR, "#messages img"), "markup was rendered"
    # An image upload: the page's own screenshot, shown inline once the
    # page has fetched it back.
    upload = os.path.join(downloads, "upload.png")
    with open(upload, "wb") as f:
        f.write(driver.get_screenshot_as_png())
    with open(upload, "rb") as f:
        png = f.read()
    find(By.ID, "attach-file").send_keys(upload)
    tell(f"ATTACHED {hashlib.sha256(png).hexdigest()} {len(png)}")
    shown = "return [...document.querySelectorAll('#messages img.attachment')].map(i => i.naturalWidth)"
    wait.until(lambda d: any(w > 0 for w in d.execute_script(shown)))
    tell("SHOWN")
    # A file from the TCP client, downloaded by a click.
    expect("FILE")
    click_button("#messages .text button", "notes.txt (11 bytes)")
    saved = os.path.join(downloads, "notes.txt")
    wait.until(lambda d: os.path.exists(saved) and os.path.getsize(saved) == 11)
    with open(saved, "rb") as f:
        got = f.read()
    assert got == b"hello file\n", got
    tell("DOWNLOADED")
    # Where alice's first message stands for bob, who has read it (STATUS).
    click_button("#messages li.mine .tick", "")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#messages li.mine .status").text == "bob read")
    tell("STATUS")
    # The members: bob, who joined first, is the admin; alice may not kick.
    find(By.ID, "who").click()
    members = lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#members .name")]
    wait.until(lambda d: members(d) == ["bob (admin)", "alice"])
    assert not find(By.ID, "members").find_elements(By.TAG_NAME, "button"), "alice may not kick"
    tell("MEMBERS")
    # bob makes alice an admin; she sees it and kicks him.
    expect("OPPED")
    wait.until(lambda d: members(d) == ["bob (admin)", "alice (admin)"])
    click_button("#members button", "Kick")
    wait.until(EC.alert_is_present()).accept()
    wait.until(lambda d: members(d) == ["alice (admin)"])
    # An admin may delete others' messages: bob's now has a delete button.
    theirs = "#messages li:not(.mine) .meta button"
    wait.until(lambda d: [b.text for b in d.find_elements(By.CSS_SELECTOR, theirs)] == ["delete", "delete"])
    tell("KICKED")
    # A dropped connection: the page says so, reconnects with backoff,
    # logs in again and shows what was said meanwhile.
    wait.until(lambda d: d.find_element(By.ID, "conn").text == "offline, reconnecting")
    tell("OFFLINE")
    expect("SAID_AWAY")
    WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "said while you were away" in texts(d))
    assert find(By.ID, "conn").text == "online"
    tell("CAUGHT_UP")
    driver.save_screenshot(SHOT)
    tell("DONE")
finally:
    driver.quit()
