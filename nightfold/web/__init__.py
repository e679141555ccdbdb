"""The operator's web console (``nightfold web``): the nights grid, a run's page
with its chunk timeline, the workers, and cancel / retry / rerun.

CLI-side code: it reads through ``nightfold.ops.history`` and acts through
``nightfold.ops.actions``; master/ and worker/ never import it.
"""
