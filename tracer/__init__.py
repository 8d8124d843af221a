"""temporal-tracer's collector: history linker, store, call trees and the CLI.

Import what you need from the public modules: :mod:`tracer.collector` (run the collector
in your own process), :mod:`tracer.devserver` (an embedded Temporal dev server) and
:mod:`tracer.cli`. The package itself stays import-light because the sample's workflow
modules live under it and are re-imported inside Temporal's workflow sandbox.
"""
