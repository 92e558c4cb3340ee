# Two kinds of keys:
# - `platform`: encrypts EKS secrets, EFS, EBS volumes (node disks and the gp3
#   StorageClass), ECR and the log groups. Its policy
#   delegates to IAM (the account root statement), as those services use it
#   through grants made on behalf of IAM principals.
# - one sops key per environment: no IAM delegation at all. Only the key policy
#   decides: the admin role may encrypt and decrypt, each environment's CI role
#   may only decrypt its own key, and only with its environment's encryption
#   context (the `context: {env: ...}` of that rule in .sops.yaml).

data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${var.account_id}:root"
  ci_role_arns = { for env, role in aws_iam_role.ci : env => role.arn }

  autoscaling_service_role = join("", [
    "arn:${data.aws_partition.current.partition}:iam::${var.account_id}:role/",
    "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
  ])
}

data "aws_iam_policy_document" "platform_key" {
  #checkov:skip=CKV_AWS_109:a key policy's Resource "*" means this key only
  #checkov:skip=CKV_AWS_111:a key policy's Resource "*" means this key only
  #checkov:skip=CKV_AWS_356:a key policy's Resource "*" means this key only
  statement {
    sid       = "AccountIAMDelegation"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${var.account_id}:log-group:*"]
    }
  }

  # Node root volumes are encrypted with this key; the auto scaling service-linked
  # role launches the nodes, so it must use the key (IAM delegation cannot reach it).
  statement {
    sid = "AutoScalingUsesKey"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_service_role]
    }
  }

  statement {
    sid       = "AutoScalingGrantsForVolumes"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_service_role]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_kms_key" "platform" {
  description         = "${var.cluster_name}: EKS secrets, EFS, ECR and logs"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.platform_key.json
}

resource "aws_kms_alias" "platform" {
  name          = "alias/${var.cluster_name}-platform"
  target_key_id = aws_kms_key.platform.key_id
}

data "aws_iam_policy_document" "sops_key" {
  #checkov:skip=CKV_AWS_109:a key policy's Resource "*" means this key only; key administration is the admin role's job
  #checkov:skip=CKV_AWS_111:a key policy's Resource "*" means this key only
  #checkov:skip=CKV_AWS_356:a key policy's Resource "*" means this key only
  for_each = var.environments

  statement {
    sid       = "AdminManagesEncryptsAndDecrypts"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [var.admin_role_arn]
    }
  }

  statement {
    sid       = "CIDecryptsOwnEnvironmentOnly"
    actions   = ["kms:Decrypt", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.ci_role_arns[each.key]]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:env"
      values   = [each.key]
    }
  }

  # Belt and braces: even a later IAM policy cannot let any CI role encrypt,
  # nor let another environment's CI role decrypt.
  statement {
    sid    = "NoCIEncrypts"
    effect = "Deny"
    actions = [
      "kms:Encrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = values(local.ci_role_arns)
    }
  }

  dynamic "statement" {
    for_each = length(local.ci_role_arns) > 1 ? [1] : []
    content {
      sid       = "NoOtherEnvironmentDecrypts"
      effect    = "Deny"
      actions   = ["kms:Decrypt"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = [for env, arn in local.ci_role_arns : arn if env != each.key]
      }
    }
  }
}

resource "aws_kms_key" "sops" {
  for_each            = var.environments
  description         = "sops: secrets of the ${each.key} environment"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.sops_key[each.key].json
}

resource "aws_kms_alias" "sops" {
  for_each      = var.environments
  name          = each.value.sops_key_alias
  target_key_id = aws_kms_key.sops[each.key].key_id
}
