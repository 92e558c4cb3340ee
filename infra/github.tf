# The lock on promotion: GitHub's own settings, which no pull request can change.
#
# hubbot's checks run code from the commit under review, so a pull request could
# remove them; these settings cannot be changed from a branch. They say:
# - only the `staging` branch deploys in the `staging` environment and only
#   `prod` in `prod`, so the environments' secrets (AWS_ROLE_ARN's role and
#   HUBBOT_RECORD_SIGNING_KEY, the environment's own key that signs its deployment
#   records) never reach a pull request's workflow, and a prod deploy waits for a
#   required reviewer;
# - `staging` and `prod` change only through reviewed pull requests that pass
#   the hubbot check (its pull request job), for administrators too, with no force push or deletion.
#
# Apply with a token that administers the repository (GITHUB_TOKEN in the
# environment of `terraform apply`). The signing keys themselves are not managed
# here, so that they never sit in the terraform state: each environment gets its
# own, set with `gh secret set` (see README.md, "The prod lock"). Only their public
# keys are here (var.record_public_keys), as the repository variable
# HUBBOT_RECORD_PUBLIC_KEYS that every deploy workflow job reads: they are not secret,
# and checking a record needs nothing else.

provider "github" {
  owner = split("/", var.github_repository)[0]
}

variable "prod_reviewer_teams" {
  description = "Slugs of the GitHub teams whose approval a prod deploy waits for."
  type        = list(string)

  validation {
    condition     = length(var.prod_reviewer_teams) > 0
    error_message = "Name at least one team that must approve prod deploys."
  }
}

variable "required_checks" {
  description = "The status checks a pull request into staging or prod must pass: the pull request workflow's job (its name)."
  type        = list(string)
  default     = ["validate, plan, diff, comment"]
}

variable "record_public_keys" {
  description = "Each environment's Ed25519 public key for deployment records, the base64 of its 32 raw bytes (README.md, \"The prod lock\", creates the pairs)."
  type        = map(string)

  validation {
    condition     = alltrue([for key in values(var.record_public_keys) : can(regex("^[A-Za-z0-9+/]{43}=$", key))])
    error_message = "Each public key is the base64 of 32 raw bytes (44 characters ending in =)."
  }

  validation {
    condition     = length(distinct(values(var.record_public_keys))) == length(var.record_public_keys)
    error_message = "Each environment signs with its own key: no two environments may share a public key."
  }

  validation {
    condition     = alltrue([for env in keys(var.environments) : contains(keys(var.record_public_keys), env)])
    error_message = "Give the public key of every environment in var.environments."
  }
}

locals {
  github_repository_name = split("/", var.github_repository)[1]
}

data "github_repository" "this" {
  full_name = var.github_repository
}

data "github_team" "prod_reviewers" {
  for_each = toset(var.prod_reviewer_teams)
  slug     = each.value
}

# One environment per entry of var.environments (staging, prod), each open to its branch only.
resource "github_repository_environment" "deploy" {
  for_each            = var.environments
  repository          = local.github_repository_name
  environment         = each.key
  can_admins_bypass   = false
  prevent_self_review = true

  dynamic "reviewers" {
    for_each = each.key == "prod" ? [1] : []
    content {
      teams = [for team in data.github_team.prod_reviewers : team.id]
    }
  }

  deployment_branch_policy {
    protected_branches     = false
    custom_branch_policies = true
  }
}

resource "github_repository_environment_deployment_policy" "deploy" {
  for_each       = var.environments
  repository     = local.github_repository_name
  environment    = github_repository_environment.deploy[each.key].environment
  branch_pattern = each.value.branch
}

resource "github_branch_protection" "deploy" {
  for_each      = var.environments
  repository_id = data.github_repository.this.node_id
  pattern       = each.value.branch

  enforce_admins                  = true
  allows_deletions                = false
  allows_force_pushes             = false
  require_conversation_resolution = true
  require_signed_commits          = true

  required_status_checks {
    strict   = true
    contexts = var.required_checks
  }

  required_pull_request_reviews {
    required_approving_review_count = 2
    dismiss_stale_reviews           = true
    require_code_owner_reviews      = true
    require_last_push_approval      = true
  }
}

# Every environment's public key, readable by every job of the repository's workflows
# (the gather job has no environment): `staging=<base64>,prod=<base64>`.
resource "github_actions_variable" "record_public_keys" {
  repository    = local.github_repository_name
  variable_name = "HUBBOT_RECORD_PUBLIC_KEYS"
  value         = join(",", [for env, key in var.record_public_keys : "${env}=${key}"])
}
