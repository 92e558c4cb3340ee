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
# Each environment's record public key (README.md, "The prod lock", makes the pairs
# and prints these lines); replace these with yours.
record_public_keys = {
  staging = "y9g9nkB/+kozbgAoJZQYS3jJtCA38m6+lhrk8rtQvB4="
  prod    = "Sg3k1/A+j+kHndzot4uKsq2iQc+h5UGFoQVrd698ok0="
}
