"""The add-in's task pane in headless Chromium, as the server serves it, with stand-in Office.js
objects (Office.onReady, Excel.run with the selected range, CustomFunctions) put in place
before the page's scripts run, and Microsoft's CDN blocked. Started by addin.test.mjs:

    python3 taskpane_check.py --url http://127.0.0.1:PORT/excel/taskpane.html --token agt_… \
        --app ordersapp --grid product_sum [--screenshot taskpane.png]

Checks: the page registers the three functions; entering the token and saving connects; the
app and its grid are listed; "Insert" writes =AEROGRID.GRID("app","grid") into the selected
cell and "Insert APPS" =AEROGRID.APPS(); the browser logged no error (a CSP violation, a
script error) other than the blocked CDN. Exits 0 when all hold, else prints why and exits 1.
Needs chromium, chromium-driver and selenium (scripts/setup installs them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

STAND_IN = r"""
window.__aerogrid = { inserted: [], associated: [] };
window.Office = {
  onReady: function (callback) {
    var info = { host: "Excel", platform: "PC" };
    setTimeout(function () { if (callback) callback(info); }, 0);
    return Promise.resolve(info);
  },
  addin: { onVisibilityModeChanged: function () { return Promise.resolve(function () {}); } },
  HostType: { Excel: "Excel" },
};
window.Excel = {
  run: function (batch) {
    var range = {
      getCell: function () { return range; },
      set formulas(value) { window.__aerogrid.inserted.push(value[0][0]); },
    };
    var context = { workbook: { getSelectedRange: function () { return range; } }, sync: function () { return Promise.resolve(); } };
    return Promise.resolve().then(function () { return batch(context); });
  },
};
window.CustomFunctions = {
  associate: function (id) { window.__aerogrid.associated.push(id); },
  Error: function (code, message) { this.code = code; this.message = message; },
  ErrorCode: { notAvailable: "#N/A" },
};
"""


def fail(message: str, driver=None) -> None:
    print(f"FAIL: {message}")
    if driver is not None:
        try:
            print("page text:", driver.find_element(By.TAG_NAME, "body").text[:2000])
            print("browser log:", json.dumps(driver.get_log("browser"))[:4000])
        except Exception as error:  # the page is gone
            print(f"(no page details: {error})")
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--grid", required=True)
    parser.add_argument("--screenshot")
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=420,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*appsforoffice.microsoft.com*"]})
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": STAND_IN})
        driver.get(args.url)
        wait = WebDriverWait(driver, 30)

        associated = driver.execute_script("return window.__aerogrid.associated.slice().sort()")
        if associated != ["APPS", "GRID", "VALUE"]:
            fail(f"the page associated {associated}, not APPS, GRID and VALUE", driver)
        server = driver.find_element(By.ID, "server").get_attribute("value")
        expected_server = args.url.split("/excel/")[0]
        if server != expected_server:
            fail(f"the server field shows {server!r}, not the page's own server {expected_server!r}", driver)

        started = time.monotonic()
        token = driver.find_element(By.ID, "token")
        token.clear()
        token.send_keys(args.token)
        driver.find_element(By.ID, "save").click()
        try:
            wait.until(lambda d: d.find_element(By.ID, "state").text == "connected")
            button = wait.until(lambda d: d.find_element(
                By.CSS_SELECTOR, f'li.app[data-app="{args.app}"] li.grid[data-grid="{args.grid}"] button'))
        except TimeoutException:
            fail(f"no connected state with {args.app}/{args.grid} listed within 30 s", driver)
        listed = time.monotonic() - started
        app_text = driver.find_element(By.CSS_SELECTOR, f'li.app[data-app="{args.app}"]').text
        if "running" not in app_text:
            fail(f"the app's entry does not say running: {app_text!r}", driver)
        stored = driver.execute_script("return localStorage.getItem('aerogrid.token')")
        if stored != args.token:
            fail("the token was not kept in localStorage", driver)

        button.click()
        driver.find_element(By.ID, "insert-apps").click()
        expected = [f'=AEROGRID.GRID("{args.app}","{args.grid}")', "=AEROGRID.APPS()"]
        try:
            wait.until(lambda d: d.execute_script("return window.__aerogrid.inserted.length") >= 2)
        except TimeoutException:
            fail("the insert buttons wrote nothing", driver)
        inserted = driver.execute_script("return window.__aerogrid.inserted")
        if inserted != expected:
            fail(f"inserted {inserted}, expected {expected}", driver)

        if args.screenshot:
            driver.save_screenshot(args.screenshot)
        problems = [entry for entry in driver.get_log("browser")
                    if entry.get("level") == "SEVERE" and "appsforoffice.microsoft.com" not in entry.get("message", "")]
        if problems:
            fail(f"the browser logged errors: {json.dumps(problems)[:3000]}", driver)
        print(f"task pane: connected and {args.app}/{args.grid} listed {listed:.2f} s after saving the token; "
              f"inserted {inserted}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
