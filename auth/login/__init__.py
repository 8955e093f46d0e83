"""OAuth logins: `cliproxy auth <provider>` signs a subscription in and writes its token file to
the auth directory in CLIProxyAPI's format, where the running proxy picks it up.

One module per provider (`login(session) -> Record`) over shared pieces: `pkce`, `callback`
(loopback redirect server, pasted redirects), `device` (RFC 8628 polling), `client` (HTTP through
`upstream-overrides`), `google` (Google sign-in and Code Assist projects), `console` (messages and
countdown), `save` (the one atomic write, at the end).

Import what you need from the modules (`auth.login.registry.login`, `auth.login.session.Session`):
this package itself imports nothing, so that `cliproxy` starts without loading the flows.
"""
