"""One experiment model: the method registry, the run layout, and what every artifact reads.

* :mod:`.registry` -- every method, declared once (``laser-repro methods``);
* :mod:`.layout` -- run folders and variant names, built and parsed in one place;
* :mod:`.config` -- the workflow config: merge, schema validation, defaults;
* :mod:`.specs` -- what each table / figure reads, cell by cell;
* :mod:`.plan` -- :class:`~.plan.Experiment`: runs, resolved run configs, artifact specs.
"""
