# GitHub Actions reach AWS through OIDC: one role per environment, trusted only
# by this repository's deploy job for that environment's branch. The deploy
# workflow runs in the GitHub environment named after the branch, which puts
# `environment:<name>` in the token's subject; the branch form is accepted too.
# Restrict each GitHub environment to its branch (deployment branch rule).

resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # GitHub's published intermediate thumbprints; AWS also validates the
  # issuer through its own trust store.
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]
}

data "aws_iam_policy_document" "ci_trust" {
  for_each = var.environments

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values = [
        "repo:${var.github_repository}:ref:refs/heads/${each.value.branch}",
        "repo:${var.github_repository}:environment:${each.value.branch}",
      ]
    }
  }
}

resource "aws_iam_role" "ci" {
  for_each             = var.environments
  name                 = each.value.ci_role_name
  assume_role_policy   = data.aws_iam_policy_document.ci_trust[each.key].json
  max_session_duration = 3600
}

# What hubbot calls (bot/registries/ecr.py): describe the repository and its
# images and scan findings, pull, and (staging) push. The repository itself is
# made here, so no CI role may create one.
locals {
  ecr_read_actions = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
  ]
  ecr_push_actions = [
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
  ]
}

data "aws_iam_policy_document" "ci" {
  for_each = var.environments

  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"] # has no resource-level form
    resources = ["*"]
  }
  statement {
    sid = "UserImage"
    actions = concat(
      local.ecr_read_actions,
      each.value.ecr_access == "push" ? local.ecr_push_actions : [],
    )
    resources = [aws_ecr_repository.user_image.arn]
  }
  statement {
    sid       = "FindCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [aws_eks_cluster.this.arn]
  }
  # hubbot asks EFS whether tess-private's homes exist before a deploy (bot/efs.py).
  # Read-only, on any file system and access point of this account and region: scoped
  # to terraform's own, a wrong id in the hub config would be refused as AccessDenied,
  # where this way the deploy says the id does not exist and which output to copy.
  statement {
    sid = "CheckHomes"
    actions = [
      "elasticfilesystem:DescribeAccessPoints",
      "elasticfilesystem:DescribeFileSystems",
      "elasticfilesystem:DescribeMountTargets",
    ]
    resources = [
      "arn:${data.aws_partition.current.partition}:elasticfilesystem:${var.region}:${var.account_id}:file-system/*",
      "arn:${data.aws_partition.current.partition}:elasticfilesystem:${var.region}:${var.account_id}:access-point/*",
    ]
  }
  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.sops[each.key].arn]
  }
}

resource "aws_iam_role_policy" "ci" {
  for_each = var.environments
  name     = "hubbot-${each.key}"
  role     = aws_iam_role.ci[each.key].id
  policy   = data.aws_iam_policy_document.ci[each.key].json
}
