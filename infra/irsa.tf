# IAM roles for Kubernetes service accounts (IRSA). Each role trusts only the
# named service accounts of this cluster's OIDC issuer.

locals {
  irsa_subjects = {
    efs_csi            = ["system:serviceaccount:kube-system:efs-csi-controller-sa"]
    ebs_csi            = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    cluster_autoscaler = ["system:serviceaccount:kube-system:cluster-autoscaler"]
    user = [
      for namespace in var.hub_namespaces :
      "system:serviceaccount:${namespace}:${var.user_service_account}"
    ]
  }
}

data "aws_iam_policy_document" "irsa_trust" {
  for_each = local.irsa_subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.cluster.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = each.value
    }
  }
}

# User pods: read the TESS data, nothing else. hub/values.yaml annotates the
# user service account with this role (output user_service_account_annotation).
resource "aws_iam_role" "user" {
  name               = var.user_role_name
  assume_role_policy = data.aws_iam_policy_document.irsa_trust["user"].json
}

data "aws_iam_policy_document" "user_data_read" {
  statement {
    sid       = "ListDataBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for bucket in var.data_buckets : "arn:${data.aws_partition.current.partition}:s3:::${bucket}"]
  }
  statement {
    sid       = "ReadDataObjects"
    actions   = ["s3:GetObject"]
    resources = [for bucket in var.data_buckets : "arn:${data.aws_partition.current.partition}:s3:::${bucket}/*"]
  }
}

resource "aws_iam_role_policy" "user_data_read" {
  name   = "read-data-buckets"
  role   = aws_iam_role.user.id
  policy = data.aws_iam_policy_document.user_data_read.json
}

# The EFS CSI driver's controller (access points are made by infra/, but the
# driver checks the file system and its mount targets).
resource "aws_iam_role" "efs_csi" {
  name               = "${var.cluster_name}-efs-csi"
  assume_role_policy = data.aws_iam_policy_document.irsa_trust["efs_csi"].json
}

resource "aws_iam_role_policy_attachment" "efs_csi" {
  role       = aws_iam_role.efs_csi.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
}

# The EBS CSI driver's controller creates, attaches and resizes the volumes of
# the gp3 StorageClass (storage.tf), encrypted with the platform key: the managed
# policy covers EC2, and the key needs its documented grant statements, limited
# to grants for AWS resources (the volumes).
resource "aws_iam_role" "ebs_csi" {
  name               = "${var.cluster_name}-ebs-csi"
  assume_role_policy = data.aws_iam_policy_document.irsa_trust["ebs_csi"].json
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

data "aws_iam_policy_document" "ebs_csi_platform_key" {
  statement {
    sid       = "GrantsForVolumes"
    actions   = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    resources = [aws_kms_key.platform.arn]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
  statement {
    sid = "UseKeyForVolumes"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = [aws_kms_key.platform.arn]
  }
}

resource "aws_iam_role_policy" "ebs_csi_platform_key" {
  name   = "encrypt-volumes-with-platform-key"
  role   = aws_iam_role.ebs_csi.id
  policy = data.aws_iam_policy_document.ebs_csi_platform_key.json
}

# The cluster autoscaler: read everything it needs to simulate, change only the
# node groups of this cluster (managed node groups tag their auto scaling groups
# with k8s.io/cluster-autoscaler/<cluster name>).
resource "aws_iam_role" "cluster_autoscaler" {
  name               = "${var.cluster_name}-cluster-autoscaler"
  assume_role_policy = data.aws_iam_policy_document.irsa_trust["cluster_autoscaler"].json
}

data "aws_iam_policy_document" "cluster_autoscaler" {
  #checkov:skip=CKV_AWS_356:Describe* calls of autoscaling, EC2 and EKS cannot be limited to resources
  statement {
    sid = "Describe"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
      "eks:DescribeNodegroup",
    ]
    resources = ["*"]
  }
  statement {
    sid = "ScaleOwnNodeGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "scale-node-groups"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}
