"""The protocol eras, one strategy each, behind one interface (:class:`.base.EraStrategy`).

``legacy`` speaks the ``initialize`` era (sessions, a handshake, server→client requests);
``modern`` the handshake-free 2026-07-28 era (``_meta`` on every request, routing
headers, ``subscriptions/listen``); ``input_required`` drives the modern era's
multi-round results, as a plain function under the call's one deadline.
"""
