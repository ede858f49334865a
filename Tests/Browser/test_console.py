"""The web console in a real browser (issue 9's acceptance), against a real server on an
embedded Kafka cluster: sign-in and sign-out; deploying the ordersapp through the upload
control, starting it and reading the exact sums in the live grid viewer; a stop seen without
a reload; the app's code edited in the browser and redeployed with a new column; a bad
bundle's refusal reason; the live log; tokens; a viewer token without controls (and the API
refusing them anyway); an operator's quota change seen by the tenant; 10,000 rows ticking
without a long task over 200 ms; a confirmed delete. axe-core checks every page; the
browser's console must stay free of errors; screenshots of the apps page and the viewer go
to .build/screenshots/.

The tests run in order, on one server, one tenant and one browser (module fixtures).
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from apps import ORDERSAPP_V2, Ticker, bundle, manifest, ordersapp_bundle, send, tickapp_bundle
from conftest import SCREENSHOTS
from console import wait_until
from support.harness import REPO, Orders, log, produce
from support.server import expect

CONSOLE = REPO / "console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
LONG_TASK_LIMIT_MS = 200


@pytest.fixture(scope="module")
def st(platform, tenant, browser, workdir):
    server, cluster = platform.server, platform.cluster
    directory = workdir / "orders"
    directory.mkdir(mode=0o755, exist_ok=True)
    state = SimpleNamespace(server=server, cluster=cluster, tenant=tenant, browser=browser,
                            base=f"http://{server.host}:{server.port}/", orders=Orders(directory, seed=9),
                            wave1=None, directory=directory)
    state.ordersapp_zip = directory / "ordersapp.zip"
    state.ordersapp_zip.write_bytes(ordersapp_bundle())
    browser.open(state.base)
    return state


def signed_in_as(st, token: str, landing: str = "#apps-heading") -> None:
    b = st.browser
    if b.all("#sign-out") and b.find("#sign-out").is_displayed():
        b.sign_out()
    b.sign_in(token)
    b.find(landing)


def as_admin(st) -> None:
    """Signed in with the tenant's admin token (a test run alone starts signed out)."""
    b = st.browser
    who = b.all("#session-who")
    if who and who[0].is_displayed() and "admin" in who[0].text and st.tenant.name in who[0].text:
        return
    signed_in_as(st, st.tenant.admin)


def expected_cells(units: dict, orders: dict | None = None) -> dict:
    """The viewer's rows as text: {product: {"units_sold": "123"[, "orders": "4"]}}."""
    rows = {}
    for product, value in units.items():
        rows[product] = {"units_sold": str(value)}
        if orders is not None:
            rows[product]["orders"] = str(orders[product]) if orders.get(product) else ""
    return rows


def equal(value, text: str) -> bool:
    """A cell's value as the viewer shows it: numbers as JavaScript prints them."""
    if isinstance(value, bool):
        return text == ("TRUE" if value else "FALSE")
    if isinstance(value, (int, float)):
        return text != "" and float(text) == value
    return text == ("" if value is None else str(value))


# --------------------------------------------------------------------------------------------
# Served as it should be


def test_the_console_is_served_with_a_strict_policy(st):
    client = st.server.client()
    index = client.get("/", headers={"Accept": "text/html"})
    assert index.status == 200 and index.content_type.startswith("text/html"), index
    assert index.headers.get("content-security-policy") == CSP, index.headers
    assert index.headers.get("cache-control") == "no-cache" and index.headers.get("etag"), index.headers
    again = client.get("/", headers={"If-None-Match": index.headers["etag"]})
    assert again.status == 304, again
    for path, kind in (("/js/main.js", "text/javascript"), ("/css/console.css", "text/css"), ("/favicon.svg", "image/svg+xml")):
        answer = client.get(path)
        assert answer.status == 200 and answer.content_type.startswith(kind), answer
    # Within the policy: no inline script or style, no outside resource, no HTML built from strings.
    for path in CONSOLE.rglob("*"):
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text()
        relative = path.relative_to(REPO)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{relative}: an inline script"
        assert " style=" not in text and "<style" not in text, f"{relative}: an inline style"
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{relative}: an outside resource"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, f"{relative}: HTML from strings"


# --------------------------------------------------------------------------------------------
# Signing in and out


def test_sign_in_keeps_the_token_out_of_urls_and_sign_out_forgets_it(st):
    b = st.browser
    b.find("#signin-token")
    b.assert_accessible("sign-in")
    b.screenshot("sign-in", SCREENSHOTS)
    b.click("#signin-submit")
    b.wait_text("#signin-message", "Enter your access token")
    b.sign_in("agt_" + "x" * 43)
    b.wait_text("#signin-message", "This token was not accepted")
    b.sign_in(st.tenant.admin)
    b.find("#apps-heading")
    b.wait_text("#session-who", st.tenant.name)
    assert "admin" in b.text("#session-who")
    b.wait_text("#connection", "Live")
    assert st.tenant.admin not in b.driver.current_url
    assert b.js("return sessionStorage.getItem('aerogrid.token')") == st.tenant.admin
    assert b.js("return JSON.stringify(localStorage) + document.cookie").find(st.tenant.admin) < 0
    assert b.js("return performance.getEntriesByType('resource').filter(r => r.name.includes(arguments[0])).length",
                st.tenant.admin) == 0, "the token appeared in a request URL"
    # A reload in the tab stays signed in; signing out forgets the token.
    b.driver.refresh()
    b.find("#apps-heading")
    b.find("#apps-empty")
    b.sign_out()
    assert b.js("return sessionStorage.getItem('aerogrid.token')") is None
    # The keyboard alone: the token field has the focus, Enter signs in.
    b.wait(lambda d: d.switch_to.active_element.get_attribute("id") == "signin-token", 10, "the focus in the token field")
    b.driver.switch_to.active_element.send_keys(st.tenant.admin + Keys.ENTER)
    b.find("#apps-heading")


# --------------------------------------------------------------------------------------------
# Deploy, start, exact sums


def test_deploy_start_and_the_viewer_reaches_the_exact_sums(st):
    b = st.browser
    b.go("#/apps")
    b.find("#apps-empty")
    b.assert_accessible("apps (empty)")
    b.find("#deploy-file").send_keys(str(st.ordersapp_zip))
    b.click("#deploy-submit")
    b.wait_text("#deploy-result", "Deployed ordersapp, version 1.")
    card = b.app_card("ordersapp")
    b.wait(lambda d: b.app_state("ordersapp") == "created", 30, "ordersapp shown as not started")
    assert card.get_attribute("data-desired") == "stopped"
    b.click('li[data-app="ordersapp"] button[data-action="start"]')
    b.wait(lambda d: b.app_state("ordersapp") == "running", 60, "ordersapp running")
    assert expect(st.tenant.api.app("ordersapp"), 200).json()["state"] == "running"

    produce(st.cluster, st.orders, 2000)
    st.wave1 = dict(st.orders.units)
    b.click('li[data-app="ordersapp"] a[id="app-ordersapp-title"]')
    b.find('#grids-list tr[data-grid="product_sum"]', 60)
    b.assert_accessible("app overview")
    b.screenshot("app", SCREENSHOTS)
    b.click('#grids-list tr[data-grid="product_sum"] a')
    b.find("#grid-table")
    expected = expected_cells(st.orders.units)
    b.wait(lambda d: b.grid_cells() == expected, 60, f"the viewer to show {expected}")
    assert b.grid_columns() == ["units_sold"]
    b.wait_text("#grid-status", "10 rows")
    # Sorted from the keyboard: by units sold, ascending.
    b.find('#grid-table thead button[data-column="units_sold"]').send_keys(Keys.ENTER)
    ordered = sorted(st.orders.units, key=lambda product: (st.orders.units[product], product))
    b.wait(lambda d: b.js("return [...document.querySelectorAll('#grid-table tbody tr[data-key]')].map(r => r.dataset.key)") == ordered,
           10, f"rows in the order {ordered}")
    assert b.find('#grid-table thead button[data-column="units_sold"]').find_element(By.XPATH, "..").get_attribute("aria-sort") == "ascending"
    b.find('#grid-table thead button[data-column=""]').send_keys(Keys.ENTER)
    b.assert_accessible("grid viewer")
    b.screenshot("viewer-product_sum", SCREENSHOTS)

    # The apps page: its chart follows the records a second while orders come in.
    b.go("#/apps")
    b.find('li[data-app="ordersapp"]')
    b.wait(lambda d: b.text('li[data-app="ordersapp"] [data-field="records"]') == "2,000", 30, "2,000 records")
    rates = []
    for _ in range(8):
        produce(st.cluster, st.orders, 300)
        time.sleep(1)
        caption = b.text('li[data-app="ordersapp"] figcaption')
        rates.append(int(caption.split(" records/s")[0].replace(",", "")) if caption[0].isdigit() else 0)
    assert max(rates) > 0, f"the chart's rate stayed at 0: {rates}"
    b.wait(lambda d: b.text('li[data-app="ordersapp"] [data-field="records"]') == "4,400", 30, "4,400 records")
    points = b.js("return document.querySelector('li[data-app=ordersapp] polyline.series-records').getAttribute('points')")
    assert len(points.split()) >= 3, points
    b.assert_accessible("apps")
    b.screenshot("apps", SCREENSHOTS)


def test_stop_start_and_restart_show_without_a_reload(st):
    b = st.browser
    b.go("#/apps")
    b.find('li[data-app="ordersapp"]')
    b.js("window.__sameDocument = true")
    b.click('li[data-app="ordersapp"] button[data-action="stop"]')
    b.wait(lambda d: b.app_state("ordersapp") == "stopped", 60, "ordersapp stopped")
    b.wait_text('li[data-app="ordersapp"] [data-field="state"]', "Stopped")
    b.find('li[data-app="ordersapp"] button[data-action="start"]')
    # A change made elsewhere (the API) reaches the page over the stream.
    expect(st.tenant.api.action("ordersapp", "start"), 200)
    b.wait(lambda d: b.app_state("ordersapp") == "running", 60, "ordersapp running again, pushed by the server")
    b.find('li[data-app="ordersapp"] button[data-action="stop"]')
    # Restart: a new run of the app (a new epoch of its grids), running again.
    epoch = wait_until(lambda: (lambda r: r.status == 200 and r.json()["epoch"])(st.tenant.api.grid("ordersapp", "product_sum")),
                       30, "the grid's epoch")
    b.click('li[data-app="ordersapp"] button[data-action="restart"]')
    wait_until(lambda: (lambda r: r.status == 200 and r.json()["epoch"] > epoch)(st.tenant.api.grid("ordersapp", "product_sum")),
               60, "a new epoch after the restart")
    b.wait(lambda d: b.app_state("ordersapp") == "running", 60, "ordersapp running after the restart")
    assert b.js("return window.__sameDocument") is True, "the page was reloaded"


# --------------------------------------------------------------------------------------------
# Editing the code and redeploying


def test_the_code_edited_in_the_browser_deploys_a_new_column(st):
    b = st.browser
    b.go("#/apps/ordersapp/edit")
    b.find("#editor-text")
    assert "files of version 1" in b.text("#editor-source")
    assert sorted(e.text.split("\n")[0] for e in b.all("#file-list button")) == ["README.md", "app.py", "app.toml"]
    b.click('#file-list button[data-path="app.py"]')
    area = b.find('#editor-text[data-path="app.py"]')
    assert "units_sold = product_sum[order.product]['units_sold'] + order.quantity" in area.get_property("value")
    b.assert_accessible("code editor")
    b.screenshot("editor", SCREENSHOTS)
    b.js("""const area = document.getElementById('editor-text');
            area.value = arguments[0];
            area.dispatchEvent(new Event('input', {bubbles: true}));""", ORDERSAPP_V2)
    b.wait_text('#file-list button[data-path="app.py"]', "edited")
    b.click("#editor-deploy")
    b.wait_text("#editor-result", "Deployed ordersapp, version 2.")
    app = wait_until(lambda: (lambda a: a if a["version"] == 2 and a["state"] == "running" else None)(
        expect(st.tenant.api.app("ordersapp"), 200).json()), 60, "ordersapp version 2 running")
    assert app["desired_state"] == "running"

    # Its log, live: the start line, then a line per 1,000 orders of this version.
    b.click('a[data-tab="logs"]')
    b.wait_text("#log", "ordersapp version 2: counting units and orders", 60)
    b.assert_accessible("log")
    before = dict(st.orders.orders)
    produce(st.cluster, st.orders, 2000)
    b.wait_text("#log", "counted 2000 orders in this version", 60)
    b.screenshot("log", SCREENSHOTS)
    wave2 = {product: st.orders.orders[product] - before.get(product, 0) for product in st.orders.orders}

    b.go("#/apps/ordersapp/grids/product_sum")
    expected = expected_cells(st.orders.units, wave2)
    b.wait(lambda d: b.grid_columns() == ["units_sold", "orders"], 60, "the new column")
    b.wait(lambda d: b.grid_cells() == expected, 60, f"the viewer to show {expected}")
    grid = expect(st.tenant.api.grid("ordersapp", "product_sum"), 200).json()
    assert grid["columns"] == ["units_sold", "orders"], grid

    # The editor now holds version 2's files.
    b.go("#/apps/ordersapp/edit")
    b.wait_text("#editor-source", "version 2")


# --------------------------------------------------------------------------------------------
# Refusals


def test_a_bad_bundle_shows_the_servers_reason(st):
    b = st.browser
    b.allow_network(" 422 ")
    b.go("#/apps")
    for name, data in (("no-manifest.zip", bundle("x", {"app.py": "print('hi')\n"})),
                       ("not-a-zip.zip", b"this is not a zip archive\n"),
                       ("bad-name.zip", bundle("x", {"app.toml": manifest("Bad Name!"), "app.py": "print('hi')\n"}))):
        path = st.directory / name
        path.write_bytes(data)
        reason = expect(st.tenant.api.deploy(data), 422, "invalid_bundle").error["message"]
        b.js("document.getElementById('deploy-result').replaceChildren()")
        b.find("#deploy-file").send_keys(str(path))
        b.click("#deploy-submit")
        shown = b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#deploy-result .refusal-reason").text, 30, "the refusal")
        assert shown == reason, f"{name}: the page shows {shown!r}, the server said {reason!r}"
        assert "The bundle was refused." in b.text("#deploy-result")
        log(f"{name}: {shown}")
        b.assert_accessible(f"apps with a refused bundle ({name})")
    b.screenshot("refused-bundle", SCREENSHOTS)
    assert [a["name"] for a in expect(st.tenant.api.get("/api/v1/apps"), 200).json()["apps"]] == ["ordersapp"]


# --------------------------------------------------------------------------------------------
# Tokens


def test_an_admin_creates_and_revokes_a_token(st):
    b = st.browser
    b.go("#/tokens")
    b.find("#tokens-list table")
    b.assert_accessible("tokens")
    b.find("#token-name").send_keys("browser-made")
    Select(b.find("#token-role")).select_by_value("viewer")
    b.click("#token-create")
    secret = b.find("#token-secret").text
    assert re.fullmatch(r"agt_[A-Za-z0-9_-]{43}", secret), secret
    made = st.server.client(secret)
    expect(made.get("/api/v1/apps"), 200)
    expect(made.action("ordersapp", "stop"), 403, "forbidden")
    row = b.wait(lambda d: [r for r in b.all("#tokens-list tr[data-token-row]") if "browser-made" in r.text], 30, "the new token's row")[0]
    token_id = row.get_attribute("data-token-row")
    b.click(f'button[data-token="{token_id}"]')
    b.find("dialog#confirm[open]")
    b.assert_accessible("confirm dialog")
    b.screenshot("confirm", SCREENSHOTS)
    b.click("#confirm-ok")
    b.wait(lambda d: "revoked" in d.find_element(By.CSS_SELECTOR, f'tr[data-token-row="{token_id}"]').text, 30, "the token revoked")
    expect(made.get("/api/v1/apps"), 401, "unauthorized")


# --------------------------------------------------------------------------------------------
# A viewer


def test_a_viewer_sees_no_controls_and_the_api_refuses_them(st):
    b = st.browser
    signed_in_as(st, st.tenant.viewer)
    b.wait_text("#session-who", "viewer")
    card = b.app_card("ordersapp")
    b.wait(lambda d: b.app_state("ordersapp") == "running", 30, "ordersapp running")
    assert not b.all("#deploy-file") and not b.all("#deploy-submit") and not b.all("#deploy-folder-button")
    assert not card.find_elements(By.CSS_SELECTOR, "[data-action]"), "action controls for a viewer"
    assert not b.all('a[href="#/tokens"]')
    b.assert_accessible("apps (viewer)")
    b.screenshot("apps-viewer-role", SCREENSHOTS)
    b.go("#/apps/ordersapp")
    b.find('#grids-list tr[data-grid="product_sum"]')
    assert not b.all('a[data-tab="edit"]') and not b.all("[data-action]")
    b.go("#/apps/ordersapp/edit")
    b.find('#grids-list tr[data-grid="product_sum"]')
    assert not b.all("#editor") and not b.all("#editor-deploy")
    b.go("#/apps/ordersapp/grids/product_sum")
    b.wait(lambda d: b.grid_columns() == ["units_sold", "orders"], 30, "the grid")
    # The API refuses what the page does not offer.
    api = st.tenant.viewer_api
    for action in ("stop", "start", "restart"):
        expect(api.action("ordersapp", action), 403, "forbidden")
    expect(api.deploy(ordersapp_bundle()), 403, "forbidden")
    expect(api.delete("/api/v1/apps/ordersapp"), 403, "forbidden")
    assert expect(st.tenant.api.app("ordersapp"), 200).json()["version"] == 2


# --------------------------------------------------------------------------------------------
# An operator


def test_an_operator_changes_a_quota_and_the_tenant_sees_it(st):
    b = st.browser
    signed_in_as(st, st.tenant.operator, "#tenants-heading")
    assert "operator" in b.text("#session-who").lower()
    b.click(f'#tenants-list tr[data-tenant="{st.tenant.name}"] a')
    field = b.find("#tenant-quota-memory_bytes")
    b.wait(lambda d: field.get_property("value") == "4G", 30, "the tenant's quota")
    b.assert_accessible("operators")
    field.clear()
    field.send_keys("3G")
    apps = b.find("#tenant-quota-max_apps")
    apps.clear()
    apps.send_keys("7")
    b.click("#tenant-quota-save")
    b.wait_text("#tenant-quota-result", "Saved")
    b.screenshot("operators", SCREENSHOTS)
    assert b.find("#tenant-quota-memory_bytes").get_property("value") == "3G"
    quota = expect(st.server.operator.get(f"/api/v1/tenants/{st.tenant.name}/quota"), 200).json()
    assert quota["memory_bytes"] == 3 << 30 and quota["max_apps"] == 7 and quota["cpus"] == 2, quota

    # One app's quota: applied to the running app at once.
    b.find("#app-quota-name").send_keys("ordersapp")
    b.click("#app-quota-load")
    memory = b.find("#app-quota-form-memory_bytes")
    b.wait(lambda d: memory.get_property("value") == "256M", 30, "the app's quota")
    memory.clear()
    memory.send_keys("320M")
    b.click("#app-quota-form-save")
    b.wait_text("#app-quota-form-result", "Saved")
    assert expect(st.server.operator.get(f"/api/v1/tenants/{st.tenant.name}/apps/ordersapp/quota"), 200).json()["memory_bytes"] == 320 << 20

    # The topic ACL.
    acl = b.find("#tenant-acl")
    acl.clear()
    acl.send_keys(f"orders\n{st.tenant.name}.*\nreports.*")
    b.click("#tenant-acl-save")
    b.wait_text("#tenant-acl-result", "Saved")
    assert expect(st.server.operator.get(f"/api/v1/tenants/{st.tenant.name}/acl"), 200).json()["topics"] == \
        ["orders", f"{st.tenant.name}.*", "reports.*"]

    # A new tenant: its first admin token shown once, working; then deleted.
    made = f"{st.tenant.name}-b"
    b.find("#tenant-name").send_keys(made)
    b.find("#tenant-topics").send_keys("orders")
    b.click("#tenant-create")
    secret = b.find("#tenant-admin-secret").text
    expect(st.server.client(secret).get("/api/v1/apps"), 200)
    b.click(f'#tenants-list tr[data-tenant="{made}"] a')
    b.wait_text("#tenant-heading", made)
    b.wait(lambda d: d.find_element(By.ID, "tenant-acl").get_property("value") == "orders", 30, "the new tenant's topics")
    b.click("#tenant-delete")
    b.find("dialog#confirm[open]")
    b.click("#confirm-ok")
    b.gone(f'#tenants-list tr[data-tenant="{made}"]')
    expect(st.server.operator.get(f"/api/v1/tenants/{made}"), 404, "not_found")
    expect(st.server.client(secret).get("/api/v1/apps"), 401, "unauthorized")

    # The tenant's admin sees the new quotas.
    signed_in_as(st, st.tenant.admin)
    b.wait_text("#tenant-quota", "of 3 GiB")
    b.wait_text("#tenant-quota", "1 of 7")
    b.wait_text("#tenant-topics", "reports.*")
    b.wait_text('li[data-app="ordersapp"] [data-field="memory"]', "of 320 MiB")
    b.go("#/tokens")
    b.find("#tokens-list table")
    b.screenshot("tokens", SCREENSHOTS)


# --------------------------------------------------------------------------------------------
# 10,000 rows ticking


def test_ten_thousand_rows_ticking_without_long_tasks(st):
    b = st.browser
    as_admin(st)
    topic = f"{st.tenant.name}.ticks"
    send(st.cluster.bootstrap, topic, [{"fill": True}])
    expect(st.tenant.api.deploy(tickapp_bundle(topic)), 201)
    expect(st.tenant.api.action("tickapp", "start"), 200)
    wait_until(lambda: (lambda r: r.status == 200 and len(r.json()["rows"]) == 10_000)(st.tenant.api.grid("tickapp", "board")),
               90, "the tick app's 10,000 rows")

    # A grid can be a picture.
    b.go("#/apps/tickapp/grids/picture")
    b.wait(lambda d: b.js("return document.getElementById('grid-table').dataset.rows") == "32", 60, "the picture")
    b.wait(lambda d: b.js("const c = document.getElementById('grid-picture'); return !!c && c.offsetParent !== null && c.height > 0"),
           30, "the picture drawn on a canvas")
    assert "32 by 32 colour cells" in b.find("#grid-picture").get_attribute("aria-label")
    b.screenshot("viewer-picture", SCREENSHOTS, min_colours=200)
    b.assert_accessible("grid viewer (a picture)")
    toggle = b.find("#grid-picture-toggle")
    toggle.click()  # the same picture as cells
    b.wait(lambda d: len(b.all("#grid-table td.colour")) >= 32 * 20, 30, "the picture's colour cells")
    assert toggle.text == "Show as picture"
    toggle.click()
    b.wait(lambda d: b.js("return document.getElementById('grid-table').hidden"), 10, "the picture again")

    started = b.now()
    b.go("#/apps/tickapp/grids/board")
    b.wait(lambda d: b.js("return document.getElementById('grid-table').dataset.rows") == "10000", 60, "10,000 rows")
    assert b.find("#grid-table").get_attribute("aria-rowcount") == "10001"
    scroller = b.find("#grid-scroll")
    scroller.send_keys(Keys.PAGE_DOWN)  # the scroll area takes the keyboard's focus
    b.wait(lambda d: b.js("return arguments[0].scrollTop", scroller) > 0, 10, "Page Down to scroll the rows")
    b.wait(lambda d: b.js("return document.querySelector('#grid-table tbody tr[data-key]').dataset.key") != "0", 10,
           "the rows in view to follow the scroll")
    flashes = 0
    with Ticker(st.cluster.bootstrap, topic, rate=20, changes=250) as ticker:
        b.wait(lambda d: b.all("#grid-table td.flash-a, #grid-table td.flash-b"), 30, "changed cells highlighted")
        steps = [
            lambda: b.js("arguments[0].scrollTop = 140000", scroller),
            lambda: b.click('#grid-table thead button[data-column="price"]'),
            lambda: b.js("arguments[0].scrollTop = 4000", scroller),
            lambda: b.find("#grid-filter").send_keys("item-01"),
            lambda: b.wait_text("#grid-status", "matching"),
            lambda: b.js("arguments[0].scrollTop = 2000", scroller),
            lambda: b.find("#grid-filter").clear() or b.find("#grid-filter").send_keys(" "),
            lambda: b.click('#grid-table thead button[data-column="price"]'),
            lambda: b.js("arguments[0].scrollTop = 0", scroller),
            lambda: b.click('#grid-table thead button[data-column=""]'),
        ]
        marks = []
        for step in steps:
            marks.append(round(b.now() - started))
            step()
            time.sleep(1.2)
            flashes += len(b.all("#grid-table td.flash-a, #grid-table td.flash-b"))
        # The long tasks of the page while it ticked: before the screenshot, whose capture
        # makes one of its own (the browser repaints the whole page for it).
        ended = b.now()
        tasks = [task for task in b.long_tasks(started) if task["start"] < ended]
        b.screenshot("viewer-board", SCREENSHOTS, min_colours=40)
        sent = ticker.sent
    assert sent >= 150, f"only {sent} tick commands were sent"
    assert flashes > 0
    longest = max((task["duration"] for task in tasks), default=0.0)
    st.browser.report.long_tasks["board, 10,000 rows ticking"] = {
        "longest_ms": round(longest, 1), "count": len(tasks), "ticks": sent, "row_changes": sent * 250}
    log(f"10,000 rows: {sent} ticks ({sent * 250} row changes); {len(tasks)} long tasks, the longest {longest:.0f} ms; "
        f"tasks {[(round(t['start'] - started), round(t['duration'])) for t in tasks]}, steps at {marks}")
    frames = [f for f in b.long_frames(started) if f["duration"] >= 50 and f["start"] < ended]
    if frames:
        log(f"long animation frames: {[(round(f['start'] - started), round(f['duration']), f['styleAndLayout'] and round(f['styleAndLayout']), f['scripts']) for f in frames]}")
    assert longest <= LONG_TASK_LIMIT_MS, f"a long task of {longest:.0f} ms: {tasks}; frames {frames}"

    # Once the ticks stop, the rows in view equal the server's grid.
    def same() -> bool:
        grid = expect(st.tenant.api.grid("tickapp", "board"), 200).json()["rows"]
        shown = b.grid_cells()
        return bool(shown) and all(key in grid and set(cells) == set(grid[key]) and
                                   all(equal(grid[key][column], text) for column, text in cells.items())
                                   for key, cells in shown.items())
    wait_until(same, 60, "the rows in view to equal the server's grid")
    b.assert_accessible("grid viewer, 10,000 rows")


# --------------------------------------------------------------------------------------------
# A crash, and a confirmed delete


def test_a_crash_shows_its_reason_and_log(st):
    b = st.browser
    as_admin(st)
    b.go("#/apps")
    crashy = bundle("crashy", {"app.toml": manifest("crashy"), "app.py": "import aerogrid\nraise RuntimeError('the price feed is missing')\n"})
    expect(st.tenant.api.deploy(crashy), 201)
    expect(st.tenant.api.action("crashy", "start"), 200)
    b.wait(lambda d: b.app_state("crashy") in ("backoff", "crashed"), 60, "crashy crashed")
    crash = b.find('li[data-app="crashy"] [data-field="crash"]')
    b.wait(lambda d: crash.get_attribute("data-reason") == "startup", 30, "the crash reason")
    assert "The app failed while starting" in crash.text
    # Waited for, not read once: between two crashes the app is briefly starting again.
    b.wait(lambda d: b.text('li[data-app="crashy"] [data-field="state"]') == "Restarting after a crash"
           or b.app_state("crashy") == "crashed", 30, "the crashed app's state text")
    b.assert_accessible("apps with a crashed app")
    b.click('li[data-app="crashy"] [data-field="crash"] a')
    b.wait_text("#log", "RuntimeError: the price feed is missing", 60)

    # Deployed elsewhere: the browser has no copy of its code; the user opens the zip, fixes
    # the code and deploys it as a new version, which runs.
    b.click('a[data-tab="edit"]')
    b.wait_text("#editor-source", "This browser has no copy of this app's code")
    path = st.directory / "crashy.zip"
    path.write_bytes(crashy)
    b.find("#editor-open-zip").send_keys(str(path))
    area = b.find('#editor-text[data-path="app.py"]')
    assert "the price feed is missing" in area.get_property("value")
    b.wait_text("#editor-source", "Opened the zip crashy.zip")
    fixed = "import aerogrid\n\napp = aerogrid.App('crashy', broker=BROKER_URI)\norders = app.topic('orders', key_type=str, value_type=dict)\n" \
            "seen = app.Grid('seen', columns=['orders'], default=lambda: {'orders': 0})\n\n@app.stream(orders)\nasync def count(records):\n" \
            "    async for _, order in records.items():\n        seen['all'] = {'orders': seen['all']['orders'] + 1}\n"
    b.js("""const area = document.getElementById('editor-text');
            area.value = arguments[0];
            area.dispatchEvent(new Event('input', {bubbles: true}));""", fixed)
    b.click("#editor-deploy")
    b.wait_text("#editor-result", "Deployed crashy, version 2.")
    b.go("#/apps")
    b.wait(lambda d: b.app_state("crashy") == "running", 90, "crashy running its fixed code")
    b.wait(lambda d: not b.find('li[data-app="crashy"] [data-field="crash"]').get_attribute("data-reason") or
           "Last crash" in b.text('li[data-app="crashy"] [data-field="crash"]'), 30, "the crash no longer current")
    wait_until(lambda: (lambda r: r.status == 200 and r.json()["rows"] == {"all": {"orders": st.orders.count}})(
        st.tenant.api.grid("crashy", "seen")), 60, "the fixed app counting every order")


def test_delete_asks_first(st):
    b = st.browser
    as_admin(st)
    b.go("#/apps")
    b.find('li[data-app="tickapp"]')
    b.click('li[data-app="tickapp"] button[data-action="delete"]')
    b.find("dialog#confirm[open]")
    b.click("#confirm-cancel")
    b.gone("dialog#confirm[open]")
    time.sleep(0.5)
    expect(st.tenant.api.app("tickapp"), 200)
    b.click('li[data-app="tickapp"] button[data-action="delete"]')
    b.find("dialog#confirm[open]")
    b.click("#confirm-ok")
    b.gone('li[data-app="tickapp"]')
    expect(st.tenant.api.app("tickapp"), 404, "not_found")
    assert b.all('li[data-app="ordersapp"]')
