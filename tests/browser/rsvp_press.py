"""Drives headless Chromium through the RSVP page, as an invited person on a phone would.

Usage: rsvp_press.py URL FORM_PNG DONE_PNG COMMENT
Opens URL (the Accept link from an invitation email), checks that "accepted" is
pre-selected, types COMMENT, saves a screenshot, presses the one button and waits for
the confirmation; prints the confirmation text. Used by tests/rsvp_web.rs.
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main() -> int:
    url, form_png, done_png, comment = sys.argv[1:5]
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=412,915", "--lang=en-US"):
        options.add_argument(arg)
    options.binary_location = sys.argv[5] if len(sys.argv) > 5 else "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        accepted = driver.find_element(By.ID, "answer-accepted")
        if not accepted.is_selected():
            print("the Accept link did not pre-select 'accepted'", file=sys.stderr)
            return 2
        # The page runs no script of its own.
        if driver.find_elements(By.TAG_NAME, "script"):
            print("the page contains a script element", file=sys.stderr)
            return 3
        driver.find_element(By.ID, "comment").send_keys(comment)
        driver.save_screenshot(form_png)
        driver.find_element(By.ID, "send").click()
        notice = WebDriverWait(driver, 20).until(
            EC.presence_of_element_located((By.ID, "notice")))
        print(notice.text)
        driver.save_screenshot(done_png)
        return 0
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
