# The cluster, its managed node groups (core: one per zone; user) and its add-ons.

data "aws_iam_policy_document" "cluster_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.cluster_name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.cluster_trust.json
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# Created before the cluster so EKS does not make it unencrypted and unbounded.
resource "aws_cloudwatch_log_group" "cluster" {
  name              = "/aws/eks/${var.cluster_name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.platform.arn
}

resource "aws_eks_cluster" "this" {
  #checkov:skip=CKV_AWS_39:GitHub-hosted runners deploy through the public endpoint; every request needs IAM auth and an access entry
  #checkov:skip=CKV_AWS_38:GitHub-hosted runners have no small fixed address range; narrow var.public_access_cidrs with self-hosted runners
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = aws_subnet.private[*].id
    endpoint_private_access = true
    endpoint_public_access  = true
    public_access_cidrs     = var.public_access_cidrs
  }

  access_config {
    # Access entries only (no aws-auth ConfigMap); nobody is admin by accident.
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.platform.arn
    }
  }

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  depends_on = [aws_iam_role_policy_attachment.cluster, aws_cloudwatch_log_group.cluster]
}

# IRSA: pods exchange their service account token for an IAM role.
data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_iam_openid_connect_provider" "cluster" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
}

locals {
  oidc_issuer = trimprefix(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
}

# Admin and CI roles: cluster admin through access entries. The CI roles need
# cluster scope: the z2jh chart installs cluster-scoped RBAC for its user
# scheduler, and hubbot deploys with --create-namespace.
locals {
  cluster_admins = merge({ admin = var.admin_role_arn }, local.ci_role_arns)
}

resource "aws_eks_access_entry" "admins" {
  for_each      = local.cluster_admins
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
}

resource "aws_eks_access_policy_association" "admins" {
  for_each      = local.cluster_admins
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_eks_access_entry.admins[each.key].principal_arn
  policy_arn    = "arn:${data.aws_partition.current.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }
}

# Nodes.
data "aws_iam_policy_document" "node_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.cluster_name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_trust.json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

# IMDSv2 only, one hop: pods cannot reach the node's credentials through the
# metadata endpoint (z2jh also blocks it for user pods); encrypted root disks.
resource "aws_launch_template" "node" {
  name_prefix = "${var.cluster_name}-node-"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 100
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.platform.arn
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.cluster_name}-node" }
  }
}

# One core group per zone. Each hub's database is an EBS volume, which never
# leaves its zone, and the autoscaler cannot choose the zone a multi-zone group
# scales into: only a group per zone lets it add a node where a volume is
# (cluster-autoscaler FAQ). Every group keeps at least one node
# (var.core_size_per_zone), so a hub's zone has a core node even without a
# scale-up. The groups differ only in name and subnet, so the autoscaler's
# balance-similar-node-groups treats them as one set (autoscaler.tf).
# Keyed by zone name, which plan knows and which a reordered list keeps.
locals {
  private_subnet_by_zone = {
    for zone in distinct(var.availability_zones) : zone => aws_subnet.private[index(local.azs, zone)].id
  }
}

resource "aws_eks_node_group" "core" {
  for_each        = local.private_subnet_by_zone
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "core-${each.key}"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = [each.value]
  instance_types  = var.core_instance_types

  # EKS never upgrades nodes with the control plane: naming the cluster's version
  # makes the apply that upgrades the cluster roll these groups to it next.
  version = aws_eks_cluster.this.version

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  scaling_config {
    min_size     = var.core_size_per_zone.min
    desired_size = var.core_size_per_zone.desired
    max_size     = var.core_size_per_zone.max
  }

  labels = { "hub.jupyter.org/node-purpose" = "core" }

  lifecycle {
    # The autoscaler owns the size after creation.
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "user" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "user"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  instance_types  = var.user_instance_types

  version = aws_eks_cluster.this.version

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  scaling_config {
    min_size     = var.user_size.min
    desired_size = var.user_size.desired
    max_size     = var.user_size.max
  }

  # What z2jh's scheduling.userPods.nodeAffinity.matchNodePurpose and its
  # user-pod toleration expect: only user servers land here.
  labels = { "hub.jupyter.org/node-purpose" = "user" }

  taint {
    key    = "hub.jupyter.org/dedicated"
    value  = "user"
    effect = "NO_SCHEDULE"
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# Add-ons, each at the default version EKS pairs with the pinned Kubernetes version.
# EKS installs vpc-cni, kube-proxy and coredns itself at creation; the add-ons
# take them over (OVERWRITE).
data "aws_eks_addon_version" "this" {
  for_each           = toset(["vpc-cni", "aws-ebs-csi-driver", "aws-efs-csi-driver", "coredns", "kube-proxy"])
  addon_name         = each.key
  kubernetes_version = aws_eks_cluster.this.version
}

# The network policy agent makes the NetworkPolicies each hub release renders
# take effect; without it the API server accepts them and nothing enforces them.
# (The add-on's documented key; its value is the string "true".)
resource "aws_eks_addon" "vpc_cni" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "vpc-cni"
  addon_version               = data.aws_eks_addon_version.this["vpc-cni"].version
  resolve_conflicts_on_create = "OVERWRITE"
  configuration_values        = jsonencode({ enableNetworkPolicy = "true" })
}

resource "aws_eks_addon" "kube_proxy" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "kube-proxy"
  addon_version               = data.aws_eks_addon_version.this["kube-proxy"].version
  resolve_conflicts_on_create = "OVERWRITE"
}

resource "aws_eks_addon" "coredns" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "coredns"
  addon_version               = data.aws_eks_addon_version.this["coredns"].version
  resolve_conflicts_on_create = "OVERWRITE"

  depends_on = [aws_eks_node_group.core]
}

resource "aws_eks_addon" "efs_csi" {
  cluster_name             = aws_eks_cluster.this.name
  addon_name               = "aws-efs-csi-driver"
  addon_version            = data.aws_eks_addon_version.this["aws-efs-csi-driver"].version
  service_account_role_arn = aws_iam_role.efs_csi.arn

  depends_on = [aws_eks_node_group.core]
}

# Provisions the EBS volumes of the gp3 StorageClass (storage.tf), such as the
# hub database's PVC `hub-db-dir`.
resource "aws_eks_addon" "ebs_csi" {
  cluster_name             = aws_eks_cluster.this.name
  addon_name               = "aws-ebs-csi-driver"
  addon_version            = data.aws_eks_addon_version.this["aws-ebs-csi-driver"].version
  service_account_role_arn = aws_iam_role.ebs_csi.arn

  depends_on = [aws_eks_node_group.core]
}
