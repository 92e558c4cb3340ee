# The TESS platform. Apply with `terraform apply -var-file=example.tfvars`
# (see README.md). hubbot validate checks these values, with the defaults in
# variables.tf, against deployments/*/hubploy.yaml, .sops.yaml and the hub config.
account_id        = "123456789012"
region            = "us-east-1"
cluster_name      = "tess"
github_repository = "tess-science/tess-hubs"
admin_role_arn    = "arn:aws:iam::123456789012:role/tess-platform-admin"
data_buckets      = ["stpubdata"]

# GitHub (github.tf): the teams whose approval a prod deploy waits for.
prod_reviewer_teams = ["hub-admins"]
