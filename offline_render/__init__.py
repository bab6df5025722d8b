"""The offline render, the main job: run the real Pulumi program for a stack under a fake AWS,
with no AWS account and no Pulumi service, and write what each kind of machine would receive.

    python -m offline_render --stack prod --out build/prod [--compare main]

replaces build/prod with: <kind>/user-data.yaml (the exact #cloud-config of each launch template:
web, worker, worker-beat), <kind>/files/ (every file it writes, at its machine path),
resources.md (every resource under its component, one line each), resources.json (their inputs,
what --compare diffs) and policies/ (the JSON documents, pretty-printed). The same render serves
the tests, the end-to-end harness and the VM tests, so they all start from the program's own
output. See docs/render.md.

Parts: fake_aws (the mocks), program (runs program.py's build), overrides (config on top of a stack
file), report (the files), compare (what changed), cli.
"""
