# The lock on promotion: GitHub's own settings, which no pull request can change.
#
# hubbot's checks run code from the commit under review, so a pull request could
# remove them; these settings cannot be changed from a branch. They say:
# - only the `staging` branch deploys in the `staging` environment and only
#   `prod` in `prod`, so the environments' secrets (AWS_ROLE_ARN's role and
#   HUBBOT_RECORD_KEY, which proves a staging deployment record) never reach a
#   pull request's workflow, and a prod deploy waits for a required reviewer;
# - `staging` and `prod` change only through reviewed pull requests that pass
#   the hubbot check (its pull request job), for administrators too, with no force push or deletion.
#
# Apply with a token that administers the repository (GITHUB_TOKEN in the
# environment of `terraform apply`). HUBBOT_RECORD_KEY itself is not managed
# here, so that it never sits in the terraform state: set the same random value
# in both environments (see README.md, "The prod lock").

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
