# What the hub config and the CI set-up need (see infra/README.md).

output "cluster_name" {
  description = "hubploy.yaml cluster.aws.cluster"
  value       = aws_eks_cluster.this.name
}

output "region" {
  description = "hubploy.yaml cluster.aws.region and registry.aws.region"
  value       = var.region
}

output "account_id" {
  description = "hubploy.yaml cluster.aws.account_id and registry.aws.account_id"
  value       = var.account_id
}

output "ecr_repository_url" {
  description = "hubploy.yaml images[].name"
  value       = aws_ecr_repository.user_image.repository_url
}

output "sops_kms_key_arns" {
  description = "Per environment: the KMS key for that environment's rule in .sops.yaml"
  value       = { for env, key in aws_kms_key.sops : env => key.arn }
}

output "sops_kms_alias_arns" {
  description = "Per environment: the alias ARN of the sops key (what .sops.yaml names)"
  value       = { for env, alias in aws_kms_alias.sops : env => alias.arn }
}

output "ci_role_arns" {
  description = "Per environment: set as the AWS_ROLE_ARN variable of the GitHub environment"
  value       = local.ci_role_arns
}

output "user_role_arn" {
  description = "IRSA role of user pods (hub/values.yaml userServiceAccount.roleArn)"
  value       = aws_iam_role.user.arn
}

output "user_service_account_annotation" {
  description = "The annotation the hub chart puts on the user service account"
  value       = { "eks.amazonaws.com/role-arn" = aws_iam_role.user.arn }
}

output "efs_file_system_id" {
  description = "deployments/tess-private/config/common.yaml homeStorage.efsFileSystemId"
  value       = aws_efs_file_system.homes.id
}

output "efs_access_point_ids" {
  description = "Per environment: deployments/tess-private/config/<env>.yaml homeStorage.efsAccessPointId"
  value       = { for env, ap in aws_efs_access_point.homes : env => ap.id }
}

output "storage_class_name" {
  description = "The default StorageClass (encrypted gp3 EBS): hub/values.yaml jupyterhub.hub.db.pvc.storageClassName"
  value       = kubernetes_storage_class_v1.gp3.metadata[0].name
}
