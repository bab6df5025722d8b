"""The offline render, the main job: run the real Pulumi program for a stack under a fake AWS,
with no AWS account and no Pulumi service, and write what each instance would receive.

    python -m offline_render --stack prod --out build/prod

writes build/prod/<instance>/user-data.yaml (the exact #cloud-config), build/prod/<instance>/files/
(every file it writes, at its machine path), and build/prod/resources.md (every resource the
stack would create, with its inputs; secrets shown as [secret]). The same render serves the
tests, the end-to-end harness and the VM tests, so they all start from the program's own output.

Parts: fake_aws (the mocks), program (runs __main__.py), overrides (config on top of a stack
file), report (the files), cli.
"""
