"""The subcommands of ``edgeclip``, one module per group; ``edgeclip/cli.py`` builds the parser from them.

| module     | commands                  | wraps                                                          |
|------------|---------------------------|----------------------------------------------------------------|
| ``train``    | compress, teach, prepare  | ``distill.compress``, ``distill.store.teach``, ``data.prepare`` |
| ``evaluate`` | eval, info, models        | ``evaluate_model``, ``count_params``, ``list_models``          |
| ``deploy``   | export, parity, bench     | ``export_artifact``, ``check_parity``, ``runtime.bench``       |
| ``demo``     | demo, quickstart          | ``apps.demo.app.serve``; ``compress`` + ``export_artifact``    |

Each module has ``add_parser(subparsers)``, which registers its commands and points each one's ``func`` at the
function that runs it (argparse's ``set_defaults(func=...)``); that function is a thin wrapper: read the flags, call
one public function, print its report, return the exit code. ``common`` holds what several groups share (argparse
value types, the CSV flags, model specs, the parity verdict).
"""
