"""What the pages share, in small modules: :mod:`~app.lib.state` (store, queue, workspace, runs),
:mod:`~app.lib.bindings` (URL-bound widgets, run and checkpoint pickers), :mod:`~app.lib.loaders`
(cached models, data, samples and analyses over the run adapter), :mod:`~app.lib.forms` (forms from
parameter schemas, the New-run form and its link), :mod:`~app.lib.layout` (page frame, errors, figures,
links), :mod:`~app.lib.live` (the jobs the Training page follows, queue waits, step curves),
:mod:`~app.lib.grid` (the Experiments page's grid builder and an experiment's trials) and
:mod:`~app.lib.methods` (the methods leaderboard as an experiment).

No computation lives here beyond caching and loading: analyses come from :mod:`workbench.analysis`,
figures from :mod:`workbench.viz`, training from :mod:`workbench.jobs` (never in the script thread),
grids and their statistics from :mod:`workbench.sweep` and :mod:`workbench.experiments`.
"""
