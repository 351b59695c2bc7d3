"""Development tools, outside the installed package (as detectron2's tools/): run from the repository root as
`python -m tools.NAME`."""
