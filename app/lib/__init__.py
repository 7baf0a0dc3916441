"""What the pages share, in small modules: :mod:`~app.lib.state` (store, queue, workspace, runs),
:mod:`~app.lib.bindings` (URL-bound widgets, run and checkpoint pickers), :mod:`~app.lib.loaders`
(cached models, data, samples and analyses over the run adapter), :mod:`~app.lib.forms` (forms from
parameter schemas, the New-run link) and :mod:`~app.lib.layout` (page frame, errors, figures, links).

No computation lives here beyond caching and loading: analyses come from :mod:`workbench.analysis`,
figures from :mod:`workbench.viz`, training from :mod:`workbench.jobs` (never in the script thread).
"""
