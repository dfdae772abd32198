"""The browser app (Panel): the only part of crane_viz that imports Panel.

`explorer.create_app` builds one session's page; `server.serve` runs it for this machine or a
classroom. Physics, engines and jobs live in the library; these modules only display them.
"""
