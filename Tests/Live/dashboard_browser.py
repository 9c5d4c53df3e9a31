#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Headless Chromium for the dashboard's live test (test_dashboard.py), driven by selenium.

Runs under the interpreter of Packaging/setup.sh --test's browser venv (selenium from PyPI; chromium and
chromium-driver from Debian) and takes one JSON command per line on stdin, answering one JSON line on stdout:

  {"op": "open", "url": U}                     load the page
  {"op": "token", "value": T}                  type T into the token box and submit it (a real key and click)
  {"op": "snapshot"}                           what the page shows: the instance fields, every table's rows
  {"op": "click", "pool": P, "target": A, "action": "drain"|"enable"}   click a target's button
  {"op": "script", "code": C}                  the value of `return C` in the page (the pure helpers)
  {"op": "console"}                            the console's error lines since the last call
  {"op": "screenshot", "path": F}              a PNG of the whole page
  {"op": "quit"}

Answers are {"ok": true, "value": ...} or {"ok": false, "error": "..."}. Prints "ready" once the browser runs."""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

# Every row of a table as {"data": its data-* attributes, "cells": texts, "fields": class name -> text}.
SNAPSHOT = """
const plain = new Set(["num", "good", "bad", "warn", "muted", "wrap"]);
const rows = (id) => [...document.querySelectorAll("#" + id + " tbody tr")].map((tr) => {
  const fields = {};
  for (const td of tr.cells) for (const c of td.classList) if (!plain.has(c)) fields[c] = td.textContent;
  return {data: {...tr.dataset}, cells: [...tr.cells].map((td) => td.textContent), fields: fields};
});
const text = (id) => document.getElementById(id).textContent;
const message = document.getElementById("message");
return {
  version: text("version"), pid: text("pid"), uptime: text("uptime"), generation: text("generation"),
  updated: text("updated"), message: message.hidden ? "" : message.textContent,
  workers: rows("workers"), reloads: rows("reloads"), routes: rows("routes"), targets: rows("targets"),
  access: rows("access"),
};
"""


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("JESTER_CHROMIUM", "/usr/bin/chromium")
    # Root in a container has no user namespace for Chromium's sandbox; /dev/shm may be tiny there.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1300", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("JESTER_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def main():
    # Never let selenium fetch a driver: the Debian one is the one to test with.
    os.environ["SE_OFFLINE"] = "true"
    driver = browser()
    driver.set_page_load_timeout(20)
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            value = None
            if op == "open":
                driver.get(command["url"])
            elif op == "token":
                box = driver.find_element(By.ID, "token")
                box.clear()
                box.send_keys(command["value"])
                driver.find_element(By.ID, "token-use").click()
            elif op == "snapshot":
                value = driver.execute_script(SNAPSHOT)
            elif op == "click":
                selector = (f'#targets tr[data-pool="{command["pool"]}"][data-target="{command["target"]}"] '
                            f'button.{command["action"]}')
                # The page keeps a row's button across polls unless the table's rows change (a target added):
                # then the button found may be gone by the click, and the new one is clicked.
                for attempt in range(3):
                    try:
                        driver.find_element(By.CSS_SELECTOR, selector).click()
                        break
                    except StaleElementReferenceException:
                        if attempt == 2:
                            raise
            elif op == "script":
                value = driver.execute_script("return " + command["code"])
            elif op == "console":
                value = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            elif op == "screenshot":
                # The whole page: as tall as its content.
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1400, max(900, height + 40))
                driver.save_screenshot(command["path"])
            elif op == "quit":
                break
            answer = {"ok": True, "value": value}
        except Exception as error:  # Reported to the test, which fails with it.
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    driver.quit()


if __name__ == "__main__":
    main()
