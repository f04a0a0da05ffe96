"""The web workspace: the pages SDRs and managers work in (issue 14), beside the webhooks on one Starlette app.

Pages are rendered on the server from Jinja2 templates (`cadence/web/templates/`, autoescaped,
kept apart from the message templates) with htmx, vendored under `cadence/web/static/`, for
in-place updates; there is no front-end build. Every page and action checks who is signed in
(`identity`), every state-changing request carries its CSRF token (`csrf`), and every response
carries the security headers (`security`). Handlers parse, call one service function of the
layers below (the same ones the CLI calls) and render: no SQL, no business rules here.
"""
