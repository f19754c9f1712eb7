"""The built-in labeling web app (Flask): guidelines, then one pair at a time with A / B / tie / skip.

Every page lives under `/a/<token>/`; an unknown token gets a bare 404, so nothing is shown or accepted without
a valid link. Forms carry a per-annotator, per-item CSRF token (an HMAC under the store's secret) and
cross-origin posts are refused. Model text is rendered by Jinja's autoescaping as plain text, and a strict
Content-Security-Policy forbids inline scripts as a second line of defence. A request body over
MAX_REQUEST_BYTES is refused (413) before it is read. A label is acknowledged (303 or JSON `{"ok": true}`) only
after `Store.record` has committed it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Optional
from urllib.parse import urlsplit

from ..errors import CloudftError
from .pairs import prompt_text
from .store import SHOWN, Store

MAX_RATIONALE = 5000
MAX_REQUEST_BYTES = 64 * 1024  # a label form is under 1 KiB plus the rationale (≤ 5000 characters, ≤ 20 KB)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


def render_markdown(text: str) -> str:
    """Guidelines Markdown → HTML with raw HTML disabled (it is shown escaped) and unsafe links refused."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).render(text)


def csrf_token(secret: str, annotator: str, pair_id: str) -> str:
    return hmac.new(secret.encode(), f"{annotator}\x00{pair_id}".encode(), hashlib.sha256).hexdigest()


def create_app(store: Store, guidelines: str, title: str = "cloudft labeling"):
    """Build the Flask app over `store`; `guidelines` is Markdown shown before the first item."""
    from flask import Flask, abort, jsonify, redirect, render_template, request, url_for
    from markupsafe import Markup

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES  # werkzeug refuses a larger body with 413
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_REQUEST_BYTES
    secret = store.meta()["secret"]
    guidelines_html = Markup(render_markdown(guidelines))

    def who(token: str) -> str:
        name = store.annotator_for_token(token)
        if name is None:
            abort(404)
        return name

    def wants_json() -> bool:
        return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json"

    def fail(status: int, message: str):
        if wants_json():
            return jsonify({"ok": False, "error": message}), status
        return render_template("error.html", title=title, message=message), status

    def view(name: str, item: dict) -> dict[str, Any]:
        first, second = ((item["response_b"], item["response_a"]) if item["swapped"]
                         else (item["response_a"], item["response_b"]))
        return {"pair_id": item["pair_id"], "prompt": prompt_text(item["prompt"]), "A": first, "B": second,
                "csrf": csrf_token(secret, name, item["pair_id"])}

    @app.after_request
    def headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # links carry the annotator's token
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(413)
    def too_large(_err):
        return fail(413, f"request too large (the limit is {MAX_REQUEST_BYTES // 1024} KiB)")

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/a/<token>/")
    def guidelines_page(token: str):
        name = who(token)
        done, total = store.progress(name)
        return render_template("guidelines.html", title=title, name=name, token=token, done=done, total=total,
                               guidelines=guidelines_html)

    @app.get("/a/<token>/item")
    def item_page(token: str):
        name = who(token)
        done, total = store.progress(name)
        item = store.next_item(name)
        if item is None:
            return render_template("done.html", title=title, name=name, token=token, done=done, total=total)
        return render_template("item.html", title=title, name=name, token=token, done=done, total=total,
                               item=view(name, item))

    @app.get("/a/<token>/next.json")
    def next_json(token: str):
        name = who(token)
        done, total = store.progress(name)
        item = store.next_item(name)
        return jsonify({"done": done, "total": total, "item": view(name, item) if item else None})

    @app.post("/a/<token>/label")
    def label(token: str):
        name = who(token)
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            return fail(403, "cross-site form submission refused")
        form = request.form
        pair_id = form.get("pair_id", "")
        if not hmac.compare_digest(form.get("csrf", ""), csrf_token(secret, name, pair_id)):
            return fail(403, "invalid or missing form token (reload the page and try again)")
        choice = form.get("choice", "")
        if choice not in SHOWN:
            return fail(400, f"choice must be one of {', '.join(SHOWN)}, got '{choice[:20]}'")
        rationale = form.get("rationale", "")
        if len(rationale) > MAX_RATIONALE:
            return fail(400, f"rationale is {len(rationale)} characters; the limit is {MAX_RATIONALE}")
        try:
            saved = store.record(name, pair_id, choice, rationale.strip())
        except CloudftError as exc:
            return fail(400, exc.message)
        if wants_json():
            return jsonify({"ok": True, "pair_id": pair_id, "choice": saved["choice"]})
        return redirect(url_for("item_page", token=token), code=303)

    return app


def serve(app, host: str, port: int, on_ready=None, stop_when: Optional[Any] = None, poll: float = 1.0) -> None:
    """Run `app` on a threaded WSGI server until interrupted, or until `stop_when()` returns true."""
    import threading

    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    if on_ready:
        on_ready(server.server_port)
    if stop_when is not None:
        def watch() -> None:
            import time

            while not stop_when():
                time.sleep(poll)
            server.shutdown()

        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
