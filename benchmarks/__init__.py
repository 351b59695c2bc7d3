"""The benchmark around the library: the command line (`cli`), the task registry (`tasks`), running and recording
one task (`running`), recipes (`config`, `recipe_schema`, `recipes/`), orchestration of many steps (`orchestration`:
the suite, sweeps, launchers), the tables command and the demo."""
